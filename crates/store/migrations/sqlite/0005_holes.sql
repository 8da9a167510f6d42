-- Issue 9, "holes closed": refused notifications cannot fill the disk, and a delivery
-- confirmation is accepted once.

-- A refused notification that never verified (forged, unsigned, unreadable, for no
-- provider, too large) keeps only its first 8 KiB; the SHA-256 and length of the whole
-- body say what it was. Such evidence may be pruned after its retention; nothing else
-- may. Rows stored before this migration have NULL here and are judged by their reason.
ALTER TABLE notifications ADD COLUMN body_sha256 TEXT;
ALTER TABLE notifications ADD COLUMN body_bytes INTEGER;
ALTER TABLE notifications ADD COLUMN refused_unverified INTEGER;
CREATE INDEX notifications_refused_unverified ON notifications (refused_unverified, received_at_ms);

-- Deletes were refused outright; now only refused, unverified evidence at least 7 days
-- old may go (the configured retention, 90 days by default, is never shorter).
DROP TRIGGER notifications_never_deleted;
CREATE TRIGGER notifications_only_old_refused_evidence_deleted BEFORE DELETE ON notifications
WHEN NOT (
    (OLD.refused_unverified = 1
     OR (OLD.refused_unverified IS NULL AND OLD.verdict = 'rejected' AND (
         OLD.reason LIKE 'bad_signature:%' OR OLD.reason LIKE 'missing_signature:%'
         OR OLD.reason LIKE 'unknown_provider:%' OR OLD.reason LIKE 'body_too_large:%'
         OR OLD.reason LIKE 'malformed: not a form body%' OR OLD.reason LIKE 'malformed: field % appears twice')))
    AND OLD.received_at_ms < CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 604800000
)
BEGIN SELECT RAISE(ABORT, 'notifications are never deleted, except refused unverified evidence past its retention'); END;
-- What a notification was, and whether it may be pruned, never changes (its verdict may:
-- a parked notification is resolved later).
CREATE TRIGGER notifications_evidence_never_changed
BEFORE UPDATE OF id, provider, received_at_ms, remote_addr, headers, body, body_sha256, body_bytes, refused_unverified
ON notifications
BEGIN SELECT RAISE(ABORT, 'a stored notification''s evidence is never changed'); END;

-- Delivery confirmations the platform's endpoint sent, each accepted once: one row per
-- (order, attempt). A replay finds the row and is refused.
CREATE TABLE delivery_confirmations (
    id              INTEGER PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    attempt_id      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
    reason          TEXT NOT NULL,
    signed_at_secs  INTEGER NOT NULL,           -- the X-Zerodrop-Timestamp it was signed with
    signature       TEXT NOT NULL,
    body_sha256     TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    UNIQUE (order_id, attempt_id)
);
CREATE TRIGGER delivery_confirmations_never_deleted BEFORE DELETE ON delivery_confirmations
BEGIN SELECT RAISE(ABORT, 'delivery confirmations are never deleted'); END;
CREATE TRIGGER delivery_confirmations_never_updated BEFORE UPDATE ON delivery_confirmations
BEGIN SELECT RAISE(ABORT, 'delivery confirmations are never changed'); END;
