-- Card keys, refunds and membership adjustments. PostgreSQL dialect; keep in step with
-- ../sqlite/0002_delivery_refunds.sql.

-- Codes are stored encrypted (AES-256-GCM, key from configuration); the fingerprint is a
-- keyed hash that refuses duplicates without keeping any code in clear.
CREATE TABLE card_keys (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    ciphertext      BYTEA NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('available', 'allocated', 'revoked')),
    order_id        TEXT UNIQUE REFERENCES orders (id),
    import_batch    TEXT NOT NULL,
    imported_at_ms  BIGINT NOT NULL,
    allocated_at_ms BIGINT,
    revoked_at_ms   BIGINT,
    UNIQUE (sku, fingerprint),
    CHECK ((state = 'available') = (order_id IS NULL))
);
CREATE INDEX card_keys_available ON card_keys (sku, state, id);

-- One row per refund. The request number is what the provider sees (out_request_no); it
-- never changes, so a retry can never become a second refund.
CREATE TABLE refunds (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    request_no     TEXT NOT NULL UNIQUE,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    full_refund    BIGINT NOT NULL CHECK (full_refund IN (0, 1)),
    origin         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('requested', 'processing', 'succeeded', 'failed')),
    detail         TEXT,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX refunds_by_order ON refunds (order_id);

-- Membership changes other than purchases: days taken back by refunds, given by compensation.
CREATE TABLE membership_adjustments (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    user_id        TEXT NOT NULL,
    plan           TEXT NOT NULL,
    days           BIGINT NOT NULL CHECK (days <> 0),
    ends_at_before BIGINT NOT NULL,
    ends_at_after  BIGINT NOT NULL,
    at_ms          BIGINT NOT NULL
);

-- Creators' and the platform's accounts only receive: like wallets, never negative.
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_receivers_never_negative
    CHECK (kind NOT IN ('creator', 'platform') OR balance >= 0);

CREATE TRIGGER card_keys_never_deleted BEFORE DELETE ON card_keys
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER refunds_never_deleted BEFORE DELETE ON refunds
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER membership_adjustments_never_deleted BEFORE DELETE ON membership_adjustments
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
