-- The sealed record. SQLite dialect; keep in step with ../postgres/0004_sealed_record.sql.
--
-- Every row that must never change carries `seal`: the hex SHA-256 of its content and of
-- the previous row's seal in its stream (an order's events, an account's entries, an
-- attention item's actions; a payment, delivery, charge, refund or verified notification
-- is a stream of its own). The content each seal covers is defined once, in
-- crates/store/src/seal/content.rs, and `zerodrop audit` recomputes every one.

ALTER TABLE orders ADD COLUMN seal_head TEXT;             -- the seal of the order's last event
ALTER TABLE order_events ADD COLUMN seal TEXT;
ALTER TABLE ledger_accounts ADD COLUMN seal_seq INTEGER NOT NULL DEFAULT 0;   -- entries so far (moves with the balance)
ALTER TABLE ledger_entries ADD COLUMN seal_seq INTEGER;   -- the entry's place in its account's chain
ALTER TABLE ledger_entries ADD COLUMN seal TEXT;
ALTER TABLE payments ADD COLUMN seal TEXT;
ALTER TABLE deliveries ADD COLUMN seal TEXT;
ALTER TABLE charges ADD COLUMN seal TEXT;
ALTER TABLE refunds ADD COLUMN seal TEXT;
ALTER TABLE notifications ADD COLUMN seal TEXT;           -- verified notifications only
ALTER TABLE operator_actions ADD COLUMN seal_stream TEXT;
ALTER TABLE operator_actions ADD COLUMN seal_seq INTEGER;
ALTER TABLE operator_actions ADD COLUMN seal TEXT;
CREATE UNIQUE INDEX ledger_entries_chain ON ledger_entries (account_id, seal_seq);
CREATE UNIQUE INDEX operator_actions_chain ON operator_actions (seal_stream, seal_seq);

-- The heads each committed transaction moved, one row per transaction (a JSON list of
-- [stream, seq, seal]), until the sealing job takes them into a checkpoint. The only
-- table of the record that is emptied: what it held lives on in the checkpoints.
CREATE TABLE seal_pending (
    id    INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    heads TEXT NOT NULL
);

-- Signed checkpoints, one per sealing run, each naming the one before. The same lines are
-- appended to the seal log outside the database.
CREATE TABLE seal_checkpoints (
    id          INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    prev_hash   TEXT NOT NULL,
    heads_root  TEXT NOT NULL,
    heads_count INTEGER NOT NULL CHECK (heads_count >= 0),
    heads       TEXT NOT NULL,          -- JSON list of [stream, seq, seal], sorted
    hash        TEXT NOT NULL UNIQUE,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL
);

-- Append-only tables without an UPDATE guard get one; tables with a mutable state keep
-- their sealed columns unchangeable.
CREATE TRIGGER payments_never_updated BEFORE UPDATE ON payments
BEGIN SELECT RAISE(ABORT, 'payments are never changed'); END;
CREATE TRIGGER deliveries_never_updated BEFORE UPDATE ON deliveries
BEGIN SELECT RAISE(ABORT, 'deliveries are never changed'); END;
CREATE TRIGGER ledger_transfers_never_updated BEFORE UPDATE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger transfers are never changed'); END;
CREATE TRIGGER membership_periods_never_deleted BEFORE DELETE ON membership_periods
BEGIN SELECT RAISE(ABORT, 'membership periods are never deleted'); END;
CREATE TRIGGER membership_periods_never_updated BEFORE UPDATE ON membership_periods
BEGIN SELECT RAISE(ABORT, 'membership periods are never changed'); END;
CREATE TRIGGER membership_adjustments_never_updated BEFORE UPDATE ON membership_adjustments
BEGIN SELECT RAISE(ABORT, 'membership adjustments are never changed'); END;
CREATE TRIGGER seal_checkpoints_never_deleted BEFORE DELETE ON seal_checkpoints
BEGIN SELECT RAISE(ABORT, 'seal checkpoints are never deleted'); END;
CREATE TRIGGER seal_checkpoints_never_updated BEFORE UPDATE ON seal_checkpoints
BEGIN SELECT RAISE(ABORT, 'seal checkpoints are never changed'); END;
CREATE TRIGGER orders_facts_never_updated
BEFORE UPDATE OF id, order_no, user_id, sku, product, quantity, amount_minor, currency, provider, created_at_ms
ON orders
BEGIN SELECT RAISE(ABORT, 'an order''s facts are never changed'); END;
CREATE TRIGGER charges_facts_never_updated
BEFORE UPDATE OF id, provider, trade_no, order_no, amount_minor, currency, paid_at_ms, evidence, recorded_at_ms, seal
ON charges
BEGIN SELECT RAISE(ABORT, 'a charge''s facts are never changed'); END;
CREATE TRIGGER refunds_facts_never_updated
BEFORE UPDATE OF id, order_id, charge_id, request_no, amount_minor, currency, full_refund, origin, reason,
                 created_at_ms, seal
ON refunds
BEGIN SELECT RAISE(ABORT, 'a refund''s facts are never changed'); END;
CREATE TRIGGER notifications_facts_never_updated
BEFORE UPDATE OF id, provider, received_at_ms, remote_addr, headers, body, seal
ON notifications
BEGIN SELECT RAISE(ABORT, 'a notification''s evidence is never changed'); END;
