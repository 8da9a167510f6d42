-- Issue 9, "holes closed": refused notifications cannot fill the disk, and a delivery
-- confirmation is accepted once.

-- A refused notification that never verified (forged, unsigned, unreadable, for no
-- provider, too large) keeps only its first 8 KiB; the SHA-256 and length of the whole
-- body say what it was. Such evidence may be pruned after its retention; nothing else
-- may. Rows stored before this migration have NULL here and are judged by their reason.
ALTER TABLE notifications ADD COLUMN body_sha256 TEXT;
ALTER TABLE notifications ADD COLUMN body_bytes BIGINT;
ALTER TABLE notifications ADD COLUMN refused_unverified BIGINT;
CREATE INDEX notifications_refused_unverified ON notifications (refused_unverified, received_at_ms);

-- Deletes were refused outright; now only refused, unverified evidence at least 7 days
-- old may go (the configured retention, 90 days by default, is never shorter).
DROP TRIGGER notifications_never_deleted ON notifications;
CREATE FUNCTION zerodrop_notifications_delete_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.refused_unverified = 1
        OR (OLD.refused_unverified IS NULL AND OLD.verdict = 'rejected' AND (
            OLD.reason LIKE 'bad_signature:%' OR OLD.reason LIKE 'missing_signature:%'
            OR OLD.reason LIKE 'unknown_provider:%' OR OLD.reason LIKE 'body_too_large:%'
            OR OLD.reason LIKE 'malformed: not a form body%' OR OLD.reason LIKE 'malformed: field % appears twice')))
       AND OLD.received_at_ms < (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT - 604800000 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'DELETE on notifications is refused: only refused unverified evidence past its retention may go';
END;
$$;
CREATE TRIGGER notifications_only_old_refused_evidence_deleted BEFORE DELETE ON notifications
    FOR EACH ROW EXECUTE FUNCTION zerodrop_notifications_delete_guard();
-- What a notification was, and whether it may be pruned, never changes (its verdict may:
-- a parked notification is resolved later).
CREATE TRIGGER notifications_evidence_never_changed
    BEFORE UPDATE OF id, provider, received_at_ms, remote_addr, headers, body, body_sha256, body_bytes, refused_unverified
    ON notifications FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();

-- Delivery confirmations the platform's endpoint sent, each accepted once: one row per
-- (order, attempt). A replay finds the row and is refused.
CREATE TABLE delivery_confirmations (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    attempt_id      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
    reason          TEXT NOT NULL,
    signed_at_secs  BIGINT NOT NULL,            -- the X-Zerodrop-Timestamp it was signed with
    signature       TEXT NOT NULL,
    body_sha256     TEXT NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    UNIQUE (order_id, attempt_id)
);
CREATE TRIGGER delivery_confirmations_never_changed BEFORE DELETE OR UPDATE ON delivery_confirmations
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
