-- The Merkle tree over the audit records (RFC 6962): one leaf hash per
-- record, and the signed checkpoints (tree heads). Both append-only.
CREATE TABLE audit_leaves (
    position INTEGER PRIMARY KEY,
    leaf     TEXT    NOT NULL
);

CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit_leaves is append-only'); END;
CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit_leaves is append-only'); END;

CREATE TABLE audit_checkpoints (
    size   INTEGER PRIMARY KEY,
    root   TEXT    NOT NULL,
    key_id TEXT    NOT NULL,
    note   TEXT    NOT NULL,
    time   TEXT    NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
