-- Charges, attention with clocks, the operator action log, and refunds that can name a
-- charge and be unknown. PostgreSQL dialect; keep in step with ../sqlite/0003_charges_attention.sql.

-- Every trade a provider reports as paid, recorded once whatever it matches. The class
-- says which policy ends it; `order_id` is the order it was reported for, once known.
CREATE TABLE charges (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider         TEXT NOT NULL,
    trade_no         TEXT NOT NULL,
    order_no         TEXT NOT NULL,            -- the merchant order number the provider reported
    order_id         TEXT REFERENCES orders (id),
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    paid_at_ms       BIGINT,
    class            TEXT NOT NULL CHECK (class IN ('matched', 'late', 'duplicate_trade', 'amount_mismatch',
                                                    'provider_mismatch', 'unknown_order')),
    evidence         TEXT NOT NULL,            -- JSON: the stored notification, or the query answer
    recorded_at_ms   BIGINT NOT NULL,
    classified_at_ms BIGINT NOT NULL,
    UNIQUE (provider, trade_no)
);
CREATE INDEX charges_by_order ON charges (order_id);

-- Every payment recorded before charges existed is its order's charge.
INSERT INTO charges (provider, trade_no, order_no, order_id, amount_minor, currency, paid_at_ms, class, evidence,
                     recorded_at_ms, classified_at_ms)
SELECT p.provider, p.trade_no, o.order_no, p.order_id, p.amount_minor, p.currency, p.paid_at_ms,
       CASE WHEN p.late = 1 THEN 'late' ELSE 'matched' END,
       '{"kind":"payment","source":"' || p.source || '"}', p.recorded_at_ms, p.recorded_at_ms
FROM payments p JOIN orders o ON o.id = p.order_id ORDER BY p.id;

CREATE TRIGGER charges_never_deleted BEFORE DELETE ON charges
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();

-- Refunds may now belong to a charge with no order (a payment for an order zerodrop never
-- knew), and may be `unknown` (the provider's answer never came; never treated as failed).
ALTER TABLE refunds ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE refunds ADD COLUMN charge_id BIGINT REFERENCES charges (id);
UPDATE refunds r SET charge_id =
    (SELECT c.id FROM charges c WHERE c.order_id = r.order_id AND c.class IN ('matched', 'late'));
ALTER TABLE refunds DROP CONSTRAINT refunds_state_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_state_check
    CHECK (state IN ('requested', 'processing', 'unknown', 'succeeded', 'failed'));
ALTER TABLE refunds ADD CONSTRAINT refunds_order_or_charge CHECK (order_id IS NOT NULL OR charge_id IS NOT NULL);
CREATE INDEX refunds_by_charge ON refunds (charge_id);

-- Attention items get what ends them: the money at stake, an owner, a due time, and the
-- recorded action that resolved them.
ALTER TABLE attention_items ADD COLUMN charge_id BIGINT REFERENCES charges (id);
ALTER TABLE attention_items ADD COLUMN at_stake_minor BIGINT NOT NULL DEFAULT 0 CHECK (at_stake_minor >= 0);
ALTER TABLE attention_items ADD COLUMN currency TEXT;
ALTER TABLE attention_items ADD COLUMN owner TEXT;
ALTER TABLE attention_items ADD COLUMN due_at_ms BIGINT;
ALTER TABLE attention_items ADD COLUMN resolution TEXT;
-- Open items: the money their order holds with no outcome is at stake (as when raised
-- today), and their clock starts now, not when they were raised (a person learns of the
-- clock with this upgrade). Resolved items keep a nominal 24 hours.
UPDATE attention_items SET
    at_stake_minor = COALESCE((SELECT o.amount_minor FROM orders o WHERE o.id = attention_items.order_id
                               AND o.status IN ('paid', 'refund_due', 'refunding')), 0),
    currency = (SELECT o.currency FROM orders o WHERE o.id = attention_items.order_id)
WHERE resolved_at_ms IS NULL;
UPDATE attention_items SET due_at_ms = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)
    + CASE WHEN at_stake_minor > 0 THEN 14400000 ELSE 86400000 END
WHERE resolved_at_ms IS NULL;
UPDATE attention_items SET due_at_ms = created_at_ms + 86400000 WHERE due_at_ms IS NULL;
CREATE INDEX attention_items_due ON attention_items (resolved_at_ms, due_at_ms);
CREATE INDEX attention_items_by_order ON attention_items (order_id);
CREATE TRIGGER attention_items_never_deleted BEFORE DELETE ON attention_items
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();

-- What people did: append-only. One row per action; an item is resolved by one of them.
CREATE TABLE operator_actions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id       BIGINT REFERENCES attention_items (id),
    order_id      TEXT REFERENCES orders (id),
    charge_id     BIGINT REFERENCES charges (id),
    action        TEXT NOT NULL,
    reason_code   TEXT NOT NULL,
    note          TEXT NOT NULL,
    actor         TEXT NOT NULL,               -- the person, as the platform knows them
    channel       TEXT NOT NULL CHECK (channel IN ('api', 'cli', 'system')),
    detail        TEXT NOT NULL,
    at_ms         BIGINT NOT NULL
);
CREATE UNIQUE INDEX operator_actions_resolve_once ON operator_actions (item_id) WHERE action <> 'assign';
CREATE TRIGGER operator_actions_never_changed BEFORE DELETE OR UPDATE ON operator_actions
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
