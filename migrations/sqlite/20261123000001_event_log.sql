-- The event log: append-only, with a gapless global position in commit order.
-- SQLite serialises writers, and every insert takes MAX(position) + 1 inside
-- its write transaction, so positions are gapless and follow commit order.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence >= 1),
    event_type     TEXT    NOT NULL,
    event_version  TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;

-- The audit hash chain: one seal per event, append-only.
CREATE TABLE audit_seals (
    position INTEGER PRIMARY KEY,
    event_id TEXT    NOT NULL,
    hash     TEXT    NOT NULL
);

CREATE TRIGGER audit_seals_no_update BEFORE UPDATE ON audit_seals
BEGIN SELECT RAISE(ABORT, 'audit_seals is append-only'); END;
CREATE TRIGGER audit_seals_no_delete BEFORE DELETE ON audit_seals
BEGIN SELECT RAISE(ABORT, 'audit_seals is append-only'); END;

-- Subscribers remember their own position.
CREATE TABLE subscriber_checkpoints (
    subscriber TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL
);

-- Read models: JSON documents per projection, rebuildable from the log.
CREATE TABLE projection_docs (
    projection TEXT NOT NULL,
    key        TEXT NOT NULL,
    doc        TEXT NOT NULL,
    PRIMARY KEY (projection, key)
);
