-- 0001: the first schema of the hsm-agent state DB.
-- Times are TEXT in UTC, fixed width with nanoseconds
-- ("2006-01-02T15:04:05.000000000Z"), so they sort as they compare.

PRAGMA application_id = 1213418817; -- 0x48534D41, "HSMA": marks the file as an hsm-agent state DB

-- One row per case (rma.Case). due and desk_refs are JSON objects.
CREATE TABLE cases (
    id              TEXT    NOT NULL PRIMARY KEY,
    dedup_key       TEXT    NOT NULL,
    serial          TEXT    NOT NULL,
    device          TEXT    NOT NULL,
    fault           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    severity        INTEGER NOT NULL,
    tier            TEXT    NOT NULL,
    flow            TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state <> ''),
    environment     TEXT    NOT NULL,
    pool            TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    opened_at       TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    closed_at       TEXT,
    rma_number      TEXT    NOT NULL,
    due             TEXT    NOT NULL,
    impact          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    held            INTEGER NOT NULL CHECK (held IN (0, 1)),
    occurrences     INTEGER NOT NULL,
    desk_refs       TEXT    NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    bundle_approved INTEGER NOT NULL CHECK (bundle_approved IN (0, 1))
) STRICT;

-- At most one non-terminal case per dedup key, whichever process writes.
-- The terminal states here must match rma.State.Terminal.
CREATE UNIQUE INDEX cases_open_dedup_key ON cases (dedup_key)
    WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX cases_dedup_key ON cases (dedup_key, opened_at);
CREATE INDEX cases_opened_at ON cases (opened_at);

-- The append-only case log (rma.Event): transitions (seq 1, 2, 3, ...) and
-- log-only rows (seq 0: delivery attempts, notes). id gives the order.
CREATE TABLE case_events (
    id      INTEGER NOT NULL PRIMARY KEY,
    case_id TEXT    NOT NULL REFERENCES cases (id),
    seq     INTEGER NOT NULL CHECK (seq >= 0),
    type    TEXT    NOT NULL CHECK (type <> ''),
    at      TEXT    NOT NULL,
    actor   TEXT    NOT NULL CHECK (actor <> ''),
    note    TEXT    NOT NULL,
    data    TEXT
) STRICT;
CREATE UNIQUE INDEX case_events_case_seq ON case_events (case_id, seq) WHERE seq > 0;
CREATE INDEX case_events_case ON case_events (case_id, id);

CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: rows cannot be updated');
END;
CREATE TRIGGER case_events_no_delete BEFORE DELETE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: rows cannot be deleted');
END;

-- The outbox (rma.Delivery): one row per case event per desk, written in the
-- transaction of the event, delivered later by the desk worker.
CREATE TABLE outbox (
    id              INTEGER NOT NULL PRIMARY KEY,
    case_id         TEXT    NOT NULL REFERENCES cases (id),
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    desk            TEXT    NOT NULL CHECK (desk <> ''),
    idempotency_key TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    bundle_path     TEXT    NOT NULL,
    withhold_bundle INTEGER NOT NULL CHECK (withhold_bundle IN (0, 1)),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'parked')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt    TEXT    NOT NULL,
    last_error      TEXT    NOT NULL,
    ticket_id       TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    delivered_at    TEXT,
    UNIQUE (case_id, seq, desk)
) STRICT;
-- Partial indexes: a delivered row (almost all of them, in time) is in
-- neither, so the worker's queue and the counts stay small and cheap.
CREATE INDEX outbox_pending ON outbox (desk, id) WHERE state = 'pending';
CREATE INDEX outbox_parked ON outbox (desk) WHERE state = 'parked';
CREATE INDEX outbox_case ON outbox (case_id, id);

-- Each device's serial history: a new row whenever the serial seen for the
-- device differs from the last one.
CREATE TABLE device_serials (
    id         INTEGER NOT NULL PRIMARY KEY,
    device     TEXT    NOT NULL,
    serial     TEXT    NOT NULL,
    first_seen TEXT    NOT NULL,
    last_seen  TEXT    NOT NULL
) STRICT;
CREATE INDEX device_serials_device ON device_serials (device, id);
