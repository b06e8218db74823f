-- The Merkle tree over the audit records (RFC 6962): one leaf hash per
-- record, and the signed checkpoints (tree heads). Both append-only.
CREATE TABLE audit_leaves (
    position bigint PRIMARY KEY,
    leaf     text   NOT NULL
);

CREATE TRIGGER audit_leaves_append_only BEFORE UPDATE OR DELETE ON audit_leaves
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER audit_leaves_no_truncate BEFORE TRUNCATE ON audit_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

CREATE TABLE audit_checkpoints (
    size   bigint PRIMARY KEY,
    root   text   NOT NULL,
    key_id text   NOT NULL,
    note   text   NOT NULL,
    time   text   NOT NULL
);

CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();
