-- Provider answers kept as evidence, and indexes the audit reads by order. SQLite
-- dialect; keep in step with ../postgres/0006_provider_answers.sql.

-- A payment learned by asking the provider (a query, a close) is backed by the provider's
-- signed answer exactly as it came: the text its signature covers and the signature, so
-- the audit can verify it again with the provider's public key, as it does a stored
-- notification. Never changed, never deleted (so rowids are never reused: no AUTOINCREMENT).
CREATE TABLE provider_answers (
    id             INTEGER PRIMARY KEY,
    provider       TEXT NOT NULL,
    method         TEXT NOT NULL,            -- the gateway method answered, e.g. alipay.trade.query
    order_no       TEXT NOT NULL,            -- the order zerodrop asked about
    trade_no       TEXT,                     -- the trade the answer names, when paid
    content        TEXT NOT NULL,            -- the exact text the signature covers
    sign           TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX provider_answers_by_order_no ON provider_answers (order_no);
CREATE TRIGGER provider_answers_never_deleted BEFORE DELETE ON provider_answers
BEGIN SELECT RAISE(ABORT, 'provider answers are never deleted'); END;
CREATE TRIGGER provider_answers_never_updated BEFORE UPDATE ON provider_answers
BEGIN SELECT RAISE(ABORT, 'provider answers are never changed'); END;

-- The audit follows each order's money page by page: what its ledger transfers and
-- membership adjustments moved, read by order.
CREATE INDEX ledger_transfers_by_order ON ledger_transfers (order_id);
CREATE INDEX membership_adjustments_by_order ON membership_adjustments (order_id);
