-- Agreements users can end (issue 11). PostgreSQL dialect; keep in step with
-- ../sqlite/0010_agreements.sql.
--
-- Plan terms are stored as published: a version never changes (a new one is published
-- instead), so what an agreement consented to can always be shown again, with its hash.

CREATE TABLE plan_terms (
    plan            TEXT NOT NULL,
    version         BIGINT NOT NULL CHECK (version > 0),
    canonical_json  TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    published_at_ms BIGINT NOT NULL,
    PRIMARY KEY (plan, version)
);

-- An agreement's live row: its state is the fold of its timeline (agreement_events), and
-- the columns below summarise it for queries. Its facts (who, which plan, which terms)
-- never change.
CREATE TABLE agreements (
    id                          TEXT PRIMARY KEY,
    user_id                     TEXT NOT NULL,
    plan                        TEXT NOT NULL,
    terms_version               BIGINT NOT NULL,
    terms_sha256                TEXT NOT NULL,
    provider                    TEXT NOT NULL,
    external_agreement_no       TEXT NOT NULL UNIQUE,   -- ours, sent to the provider
    provider_agreement_no       TEXT,                   -- the provider's, once signed
    state                       TEXT NOT NULL,
    mode                        TEXT,                   -- how it ended (terminating, terminated)
    signed_at_ms                BIGINT,
    paid_until_ms               BIGINT,
    periods_paid                BIGINT NOT NULL DEFAULT 0 CHECK (periods_paid >= 0),
    hold_since_ms               BIGINT,
    hold_until_ms               BIGINT,
    hold_reason                 TEXT,                   -- JSON (domain::hold::HoldReason)
    termination_committed_at_ms BIGINT,
    termination_effective_at_ms BIGINT,
    termination_confirmed_at_ms BIGINT,
    created_at_ms               BIGINT NOT NULL,
    updated_at_ms               BIGINT NOT NULL,
    event_seq                   BIGINT NOT NULL DEFAULT 0,
    seal_head                   TEXT,                   -- the seal of its last event
    FOREIGN KEY (plan, terms_version) REFERENCES plan_terms (plan, version)
);
CREATE UNIQUE INDEX agreements_provider_no ON agreements (provider, provider_agreement_no)
    WHERE provider_agreement_no IS NOT NULL;
CREATE INDEX agreements_by_user ON agreements (user_id, created_at_ms);
CREATE INDEX agreements_by_state ON agreements (state, paid_until_ms);

-- The append-only timeline, sealed like order events: a chain per agreement, each row in
-- its transaction's batch.
CREATE TABLE agreement_events (
    agreement_id TEXT NOT NULL REFERENCES agreements (id),
    seq          BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    cause        TEXT NOT NULL,
    data         TEXT NOT NULL,
    seal         TEXT NOT NULL,
    seal_batch   BYTEA,
    PRIMARY KEY (agreement_id, seq)
);

-- A quote is used once: `used_at_ms` and the answer given are set together, and the same
-- quote id gets the same answer again.
CREATE TABLE termination_quotes (
    id            TEXT PRIMARY KEY,
    agreement_id  TEXT NOT NULL REFERENCES agreements (id),
    quote         TEXT NOT NULL,     -- JSON (domain::termination::Quote)
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT,
    answer        TEXT               -- JSON of the answer given when used
);
CREATE INDEX termination_quotes_by_agreement ON termination_quotes (agreement_id, created_at_ms);

-- Step-up verification. One TOTP secret per user (base32); `last_step` refuses a code
-- replayed within its window.
CREATE TABLE user_totp (
    user_id         TEXT PRIMARY KEY,
    secret_base32   TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    enrolled_at_ms  BIGINT NOT NULL,
    confirmed_at_ms BIGINT,
    last_step       BIGINT
);

-- One-time codes, stored hashed, used once, until they expire.
CREATE TABLE verification_codes (
    id            TEXT PRIMARY KEY,
    agreement_id  TEXT NOT NULL REFERENCES agreements (id),
    user_id       TEXT NOT NULL,
    code_sha256   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT
);
CREATE INDEX verification_codes_by_agreement ON verification_codes (agreement_id, created_at_ms);

-- Wrong codes, with their times: the hold rules count those in a window.
CREATE TABLE verification_failures (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      TEXT NOT NULL,
    agreement_id TEXT,
    method       TEXT NOT NULL,
    at_ms        BIGINT NOT NULL
);
CREATE INDEX verification_failures_by_user ON verification_failures (user_id, at_ms);

-- Messages a user can read (one-time codes, notices), newest first.
CREATE TABLE user_messages (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    at_ms   BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    body    TEXT NOT NULL           -- JSON ({zh_cn, en})
);
CREATE INDEX user_messages_by_user ON user_messages (user_id, id);

-- Agreement notifications as received, stored before acting; verified again before use.
CREATE TABLE agreement_notifications (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider              TEXT NOT NULL,
    received_at_ms        BIGINT NOT NULL,
    remote_addr           TEXT,
    headers               TEXT NOT NULL,
    body                  BYTEA NOT NULL,
    verdict               TEXT NOT NULL,
    reason                TEXT,
    external_agreement_no TEXT,
    notify_type           TEXT,
    notify_id             TEXT,
    processed_at_ms       BIGINT
);
CREATE INDEX agreement_notifications_by_no ON agreement_notifications (external_agreement_no, received_at_ms);

-- A membership order charged under an agreement names it.
ALTER TABLE orders ADD COLUMN agreement_id TEXT REFERENCES agreements (id);
CREATE INDEX orders_by_agreement ON orders (agreement_id) WHERE agreement_id IS NOT NULL;

-- What must never change.
CREATE TRIGGER plan_terms_never_changed BEFORE UPDATE OR DELETE ON plan_terms
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER agreements_never_deleted BEFORE DELETE ON agreements
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER agreements_facts_never_updated
    BEFORE UPDATE OF id, user_id, plan, terms_version, terms_sha256, provider, external_agreement_no, created_at_ms
    ON agreements FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER agreement_events_never_changed BEFORE UPDATE OR DELETE ON agreement_events
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER termination_quotes_never_deleted BEFORE DELETE ON termination_quotes
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER termination_quotes_facts_never_updated
    BEFORE UPDATE OF id, agreement_id, quote, created_at_ms, expires_at_ms ON termination_quotes
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER termination_quotes_used_once
    BEFORE UPDATE OF used_at_ms, answer ON termination_quotes
    FOR EACH ROW WHEN (OLD.used_at_ms IS NOT NULL) EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER verification_failures_never_changed BEFORE UPDATE ON verification_failures
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER agreement_notifications_facts_never_updated
    BEFORE UPDATE OF id, provider, received_at_ms, remote_addr, headers, body ON agreement_notifications
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER agreement_notifications_never_deleted BEFORE DELETE ON agreement_notifications
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();
CREATE TRIGGER orders_agreement_set_once
    BEFORE UPDATE OF agreement_id ON orders
    FOR EACH ROW WHEN (OLD.agreement_id IS NOT NULL) EXECUTE FUNCTION zerodrop_refuse_change();
