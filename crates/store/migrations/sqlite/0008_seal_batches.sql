-- Sealed batches. SQLite dialect; keep in step with ../postgres/0008_seal_batches.sql.
--
-- Every sealed row but an operator action names the transaction that sealed it: 16 random
-- bytes, the same for every row the transaction sealed. The transaction's `seal_pending`
-- row then holds one head for all of them, the batch's digest over their seals, instead of
-- one head per stream it moved; the audit recomputes the digest from the rows that name
-- the batch (see crates/store/src/seal/batch.rs). Rows sealed before this migration name
-- no batch and stay checked against the heads their checkpoints recorded.

ALTER TABLE order_events ADD COLUMN seal_batch BLOB;
ALTER TABLE ledger_entries ADD COLUMN seal_batch BLOB;
ALTER TABLE payments ADD COLUMN seal_batch BLOB;
ALTER TABLE deliveries ADD COLUMN seal_batch BLOB;
ALTER TABLE charges ADD COLUMN seal_batch BLOB;
ALTER TABLE refunds ADD COLUMN seal_batch BLOB;
ALTER TABLE notifications ADD COLUMN seal_batch BLOB;

-- The batch is kept like the seal itself (events, entries, payments and deliveries refuse
-- every update already).
CREATE TRIGGER charges_batch_never_updated
BEFORE UPDATE OF seal_batch
ON charges
BEGIN SELECT RAISE(ABORT, 'a charge''s facts are never changed'); END;
CREATE TRIGGER refunds_batch_never_updated
BEFORE UPDATE OF seal_batch
ON refunds
BEGIN SELECT RAISE(ABORT, 'a refund''s facts are never changed'); END;
CREATE TRIGGER notifications_batch_never_updated
BEFORE UPDATE OF seal_batch
ON notifications
BEGIN SELECT RAISE(ABORT, 'a notification''s evidence is never changed'); END;
