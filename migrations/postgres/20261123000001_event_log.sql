-- The event log as postgres-es expects it, plus a gapless global position in
-- commit order and a stable event id, both filled by the database.
CREATE TABLE events (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 1),
    event_type     text   NOT NULL,
    event_version  text   NOT NULL,
    payload        json   NOT NULL,
    metadata       json   NOT NULL,
    position       bigint NOT NULL UNIQUE,
    event_id       uuid   NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- postgres-es reads and writes snapshots here when a snapshot store is used.
CREATE TABLE snapshots (
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL,
    current_snapshot bigint NOT NULL,
    payload          json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- One counter row. Each insert increments it under its row lock, which is
-- held until the inserting transaction ends: a concurrent inserter waits, so
-- positions are handed out in commit order, and a rollback gives its number
-- back, so there are no gaps.
CREATE TABLE event_log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO event_log_head (singleton, position) VALUES (true, 0);

CREATE FUNCTION assign_event_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE event_log_head SET position = position + 1 RETURNING position INTO NEW.position;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_assign_position BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION assign_event_position();

CREATE FUNCTION reject_append_only_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

CREATE TABLE audit_seals (
    position bigint PRIMARY KEY,
    event_id text   NOT NULL,
    hash     text   NOT NULL
);

CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

CREATE TABLE subscriber_checkpoints (
    subscriber text   PRIMARY KEY,
    position   bigint NOT NULL
);

CREATE TABLE projection_docs (
    projection text NOT NULL,
    key        text NOT NULL,
    doc        text NOT NULL,
    PRIMARY KEY (projection, key)
);
