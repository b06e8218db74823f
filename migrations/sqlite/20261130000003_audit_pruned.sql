-- Retention: a record may leave the live log only once it was exported to
-- an evidence bundle and a prune names it here (append-only). Its seal and
-- Merkle leaf stay, so the chain and the tree still verify across it.
CREATE TABLE audit_pruned (
    position  INTEGER PRIMARY KEY,
    pruned_by TEXT    NOT NULL
);

CREATE TRIGGER audit_pruned_no_update BEFORE UPDATE ON audit_pruned
BEGIN SELECT RAISE(ABORT, 'audit_pruned is append-only'); END;
CREATE TRIGGER audit_pruned_no_delete BEFORE DELETE ON audit_pruned
BEGIN SELECT RAISE(ABORT, 'audit_pruned is append-only'); END;

DROP TRIGGER events_no_delete;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN NOT EXISTS (SELECT 1 FROM audit_pruned WHERE position = OLD.position)
BEGIN SELECT RAISE(ABORT, 'events is append-only (records leave only when pruned after export)'); END;
