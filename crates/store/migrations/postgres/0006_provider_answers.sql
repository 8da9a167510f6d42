-- Provider answers kept as evidence, and indexes the audit reads by order. PostgreSQL
-- dialect; keep in step with ../sqlite/0006_provider_answers.sql.

-- A payment learned by asking the provider (a query, a close) is backed by the provider's
-- signed answer exactly as it came: the text its signature covers and the signature, so
-- the audit can verify it again with the provider's public key, as it does a stored
-- notification. Never changed, never deleted.
CREATE TABLE provider_answers (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider       TEXT NOT NULL,
    method         TEXT NOT NULL,            -- the gateway method answered, e.g. alipay.trade.query
    order_no       TEXT NOT NULL,            -- the order zerodrop asked about
    trade_no       TEXT,                     -- the trade the answer names, when paid
    content        TEXT NOT NULL,            -- the exact text the signature covers
    sign           TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX provider_answers_by_order_no ON provider_answers (order_no);
CREATE TRIGGER provider_answers_never_changed BEFORE DELETE OR UPDATE ON provider_answers
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();

-- The audit follows each order's money page by page: what its ledger transfers and
-- membership adjustments moved, read by order.
CREATE INDEX ledger_transfers_by_order ON ledger_transfers (order_id);
CREATE INDEX membership_adjustments_by_order ON membership_adjustments (order_id);
