-- Reconciliation against the provider's bills. PostgreSQL dialect; keep in step with
-- ../sqlite/0007_reconciliation.sql.

-- One imported bill file. The same file (by its SHA-256) is imported once: a second import
-- finds this row and changes nothing. Never deleted.
CREATE TABLE bills (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider           TEXT NOT NULL,
    account            TEXT NOT NULL,            -- the merchant account the bill is for
    file_name          TEXT NOT NULL,            -- as given (a path's last part), for people
    file_sha256        TEXT NOT NULL,            -- hex SHA-256 of the file as received
    from_ms            BIGINT NOT NULL,          -- the bill's range, [from, to)
    to_ms              BIGINT NOT NULL CHECK (to_ms > from_ms),
    currency           TEXT NOT NULL,
    trade_count        BIGINT NOT NULL CHECK (trade_count >= 0),
    trade_total_minor  BIGINT NOT NULL CHECK (trade_total_minor >= 0),
    refund_count       BIGINT NOT NULL CHECK (refund_count >= 0),
    refund_total_minor BIGINT NOT NULL CHECK (refund_total_minor >= 0),
    imported_at_ms     BIGINT NOT NULL,
    UNIQUE (provider, file_sha256)
);
CREATE INDEX bills_by_range ON bills (provider, from_ms);
CREATE TRIGGER bills_never_changed BEFORE DELETE OR UPDATE ON bills
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();

-- Each line of a bill's table, as read (amounts positive; `kind` says trade or refund).
-- `line_no` is the line in the CSV file (1-based, comment lines counted) and `line_sha256`
-- the hash of its bytes as they were in the file: a repair's cause names both.
CREATE TABLE bill_lines (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bill_id       BIGINT NOT NULL REFERENCES bills (id),
    line_no       BIGINT NOT NULL,
    line_sha256   TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('trade', 'refund')),
    trade_no      TEXT NOT NULL,
    order_no      TEXT NOT NULL,
    refund_no     TEXT NOT NULL,                 -- '' for trades
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    -- Also the lookup of a trade or refund in a bill (the reader numbers lines itself,
    -- and every other index costs a million-line import its time).
    UNIQUE (bill_id, kind, trade_no, refund_no)
);
CREATE TRIGGER bill_lines_never_changed BEFORE DELETE OR UPDATE ON bill_lines
    FOR EACH ROW EXECUTE FUNCTION zerodrop_refuse_change();

-- One reconciliation of one bill: what matched and what differed, by class, as JSON totals
-- (the report), and when it ran.
CREATE TABLE reconciliations (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bill_id        BIGINT NOT NULL UNIQUE REFERENCES bills (id),
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    summary        TEXT NOT NULL                 -- JSON: counts and amounts per class
);

-- A difference the reconciliation found, one per bill line or charge or refund, and what
-- was done about it. `fact_key` names the fact whichever bill brought it
-- (`trade:<trade_no>`, `refund:<trade_no>:<refund_no>`, `charge:<id>`, `outcome:<charge id>`):
-- a fact is repaired once, however many times a bill naming it is imported.
CREATE TABLE bill_differences (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reconciliation_id BIGINT NOT NULL REFERENCES reconciliations (id),
    provider          TEXT NOT NULL,
    fact_key          TEXT NOT NULL,
    class             TEXT NOT NULL CHECK (class IN ('unknown_to_us', 'missing_from_bill', 'amount_differs',
                                                     'refund_unknown_to_us', 'refund_missing_from_bill',
                                                     'no_outcome')),
    bill_line_id      BIGINT REFERENCES bill_lines (id),
    charge_id         BIGINT REFERENCES charges (id),
    refund_id         TEXT REFERENCES refunds (id),
    order_id          TEXT REFERENCES orders (id),
    amount_minor      BIGINT NOT NULL,           -- zerodrop's amount (0 when it has none)
    bill_amount_minor BIGINT NOT NULL,           -- the bill's amount (0 when it has none)
    state             TEXT NOT NULL CHECK (state IN ('pending', 'repaired', 'attention', 'resolved')),
    outcome           TEXT,                      -- what the repair did, in words for people
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL,
    UNIQUE (provider, fact_key)
);
CREATE INDEX bill_differences_by_reconciliation ON bill_differences (reconciliation_id);

-- Matching reads a bill's range of charges by paid time.
CREATE INDEX charges_by_paid_at ON charges (provider, paid_at_ms);
-- A bill's trade is matched by its number whichever provider (app) of the account recorded it.
CREATE INDEX charges_by_trade ON charges (trade_no);
