-- Card keys, refunds and membership adjustments. SQLite dialect; keep in step with
-- ../postgres/0002_delivery_refunds.sql.

-- Codes are stored encrypted (AES-256-GCM, key from configuration); the fingerprint is a
-- keyed hash that refuses duplicates without keeping any code in clear.
CREATE TABLE card_keys (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sku             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    ciphertext      BLOB NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('available', 'allocated', 'revoked')),
    order_id        TEXT UNIQUE REFERENCES orders (id),
    import_batch    TEXT NOT NULL,
    imported_at_ms  INTEGER NOT NULL,
    allocated_at_ms INTEGER,
    revoked_at_ms   INTEGER,
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
    amount_minor   INTEGER NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    full_refund    INTEGER NOT NULL CHECK (full_refund IN (0, 1)),
    origin         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('requested', 'processing', 'succeeded', 'failed')),
    detail         TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
);
CREATE INDEX refunds_by_order ON refunds (order_id);

-- Membership changes other than purchases: days taken back by refunds, given by compensation.
CREATE TABLE membership_adjustments (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    user_id        TEXT NOT NULL,
    plan           TEXT NOT NULL,
    days           INTEGER NOT NULL CHECK (days <> 0),
    ends_at_before INTEGER NOT NULL,
    ends_at_after  INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL
);

-- Creators' and the platform's accounts only receive: like wallets, never negative.
CREATE TRIGGER ledger_receivers_never_negative_insert BEFORE INSERT ON ledger_accounts
WHEN NEW.kind IN ('creator', 'platform') AND NEW.balance < 0
BEGIN SELECT RAISE(ABORT, 'a receiving account cannot go below zero'); END;
CREATE TRIGGER ledger_receivers_never_negative_update BEFORE UPDATE ON ledger_accounts
WHEN NEW.kind IN ('creator', 'platform') AND NEW.balance < 0
BEGIN SELECT RAISE(ABORT, 'a receiving account cannot go below zero'); END;

CREATE TRIGGER card_keys_never_deleted BEFORE DELETE ON card_keys
BEGIN SELECT RAISE(ABORT, 'card keys are never deleted'); END;
CREATE TRIGGER refunds_never_deleted BEFORE DELETE ON refunds
BEGIN SELECT RAISE(ABORT, 'refunds are never deleted'); END;
CREATE TRIGGER membership_adjustments_never_deleted BEFORE DELETE ON membership_adjustments
BEGIN SELECT RAISE(ABORT, 'membership adjustments are never deleted'); END;
