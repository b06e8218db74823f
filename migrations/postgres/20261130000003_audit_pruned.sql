-- Retention: a record may leave the live log only once it was exported to
-- an evidence bundle and a prune names it here (append-only). Its seal and
-- Merkle leaf stay, so the chain and the tree still verify across it.
CREATE TABLE audit_pruned (
    position  bigint PRIMARY KEY,
    pruned_by text   NOT NULL
);

CREATE TRIGGER audit_pruned_append_only BEFORE UPDATE OR DELETE ON audit_pruned
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER audit_pruned_no_truncate BEFORE TRUNCATE ON audit_pruned
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

CREATE FUNCTION reject_unpruned_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_pruned WHERE position = OLD.position) THEN
        RAISE EXCEPTION 'events is append-only (records leave only when pruned after export)';
    END IF;
    RETURN OLD;
END
$$;

DROP TRIGGER events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER events_delete_only_pruned BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION reject_unpruned_delete();
