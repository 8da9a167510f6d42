-- zerodrop core schema, SQLite dialect. Keep in step with ../postgres/0001_core.sql:
-- the same tables, columns and constraints; only types and key generation differ.
-- Nothing in these tables is ever deleted.

CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    order_no         TEXT NOT NULL UNIQUE,
    user_id          TEXT NOT NULL,
    sku              TEXT NOT NULL,
    product          TEXT NOT NULL,            -- JSON snapshot of the product when ordered
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    status           TEXT NOT NULL,
    attention        INTEGER NOT NULL DEFAULT 0 CHECK (attention IN (0, 1)),
    attention_reason TEXT,
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER NOT NULL,
    paid_at_ms       INTEGER,
    deliver_by_ms    INTEGER,
    settled_at_ms    INTEGER,
    event_seq        INTEGER NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, created_at_ms);
CREATE INDEX orders_by_user ON orders (user_id, created_at_ms);

CREATE TABLE order_events (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq      INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    actor    TEXT NOT NULL,
    cause    TEXT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

CREATE TABLE payments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id       TEXT NOT NULL UNIQUE REFERENCES orders (id),
    provider       TEXT NOT NULL,
    trade_no       TEXT NOT NULL,
    amount_minor   INTEGER NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    paid_at_ms     INTEGER,
    recorded_at_ms INTEGER NOT NULL,
    source         TEXT NOT NULL,
    late           INTEGER NOT NULL CHECK (late IN (0, 1)),
    UNIQUE (provider, trade_no)
);

CREATE TABLE deliveries (
    order_id        TEXT PRIMARY KEY REFERENCES orders (id),
    kind            TEXT NOT NULL,
    delivered_at_ms INTEGER NOT NULL,
    detail          TEXT NOT NULL
);

CREATE TABLE ledger_accounts (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    currency      TEXT NOT NULL,
    owner         TEXT,                     -- the user, for wallets
    balance       INTEGER NOT NULL,
    CHECK (kind <> 'wallet' OR balance >= 0)
);
CREATE INDEX ledger_accounts_by_owner ON ledger_accounts (owner);

CREATE TABLE ledger_transfers (
    id           TEXT PRIMARY KEY,
    -- Checked at commit: a transfer is recorded first (its id is what makes a retry a
    -- no-op), and its accounts are created by their first movement just after.
    from_account TEXT NOT NULL REFERENCES ledger_accounts (id) DEFERRABLE INITIALLY DEFERRED,
    to_account   TEXT NOT NULL REFERENCES ledger_accounts (id) DEFERRABLE INITIALLY DEFERRED,
    currency     TEXT NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    order_id     TEXT,
    at_ms        INTEGER NOT NULL,
    CHECK (from_account <> to_account)
);
CREATE INDEX ledger_transfers_by_to_account ON ledger_transfers (to_account, at_ms);

CREATE TABLE ledger_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id   TEXT NOT NULL REFERENCES ledger_transfers (id),
    account_id    TEXT NOT NULL REFERENCES ledger_accounts (id) DEFERRABLE INITIALLY DEFERRED,
    amount        INTEGER NOT NULL CHECK (amount <> 0),
    balance_after INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    UNIQUE (transfer_id, account_id)
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id, id);

CREATE TABLE memberships (
    user_id       TEXT NOT NULL,
    plan          TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ends_at_ms    INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_order_id TEXT NOT NULL,
    PRIMARY KEY (user_id, plan)
);

CREATE TABLE membership_periods (
    order_id      TEXT PRIMARY KEY REFERENCES orders (id),
    user_id       TEXT NOT NULL,
    plan          TEXT NOT NULL,
    days          INTEGER NOT NULL CHECK (days > 0),
    starts_at_ms  INTEGER NOT NULL,
    ends_at_ms    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX membership_periods_by_user ON membership_periods (user_id, plan, starts_at_ms);

-- Ids are chosen by zerodrop (time-ordered: milliseconds, then random bits), so a
-- notification's id is known before its row is written at commit.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    provider        TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    remote_addr     TEXT,
    headers         TEXT NOT NULL,
    body            BLOB NOT NULL,
    verdict         TEXT NOT NULL,
    reason          TEXT,
    order_no        TEXT,
    trade_no        TEXT,
    notify_id       TEXT,
    processed_at_ms INTEGER
);
CREATE INDEX notifications_by_verdict ON notifications (verdict, received_at_ms);
CREATE INDEX notifications_by_order_no ON notifications (order_no);

CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    order_id       TEXT,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL,
    run_at_ms      INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_until_ms INTEGER,
    lease_owner    TEXT,
    last_error     TEXT,
    dedupe_key     TEXT UNIQUE,
    created_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
);
CREATE INDEX jobs_due ON jobs (state, run_at_ms);
CREATE INDEX jobs_by_order ON jobs (order_id);

CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE attention_items (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        TEXT,
    notification_id INTEGER,
    job_id          INTEGER,
    reason          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    resolved_at_ms  INTEGER
);
CREATE INDEX attention_items_open ON attention_items (resolved_at_ms, created_at_ms);

-- The record is append-only: these triggers refuse deletion outright, and refuse any
-- change to events and ledger entries, so an operator's slip cannot erase history.
CREATE TRIGGER orders_never_deleted BEFORE DELETE ON orders
BEGIN SELECT RAISE(ABORT, 'orders are never deleted'); END;
CREATE TRIGGER order_events_never_deleted BEFORE DELETE ON order_events
BEGIN SELECT RAISE(ABORT, 'order events are never deleted'); END;
CREATE TRIGGER order_events_never_updated BEFORE UPDATE ON order_events
BEGIN SELECT RAISE(ABORT, 'order events are never changed'); END;
CREATE TRIGGER payments_never_deleted BEFORE DELETE ON payments
BEGIN SELECT RAISE(ABORT, 'payments are never deleted'); END;
CREATE TRIGGER deliveries_never_deleted BEFORE DELETE ON deliveries
BEGIN SELECT RAISE(ABORT, 'deliveries are never deleted'); END;
CREATE TRIGGER ledger_transfers_never_deleted BEFORE DELETE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger transfers are never deleted'); END;
CREATE TRIGGER ledger_entries_never_deleted BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are never deleted'); END;
CREATE TRIGGER ledger_entries_never_updated BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are never changed'); END;
CREATE TRIGGER notifications_never_deleted BEFORE DELETE ON notifications
BEGIN SELECT RAISE(ABORT, 'notifications are never deleted'); END;
