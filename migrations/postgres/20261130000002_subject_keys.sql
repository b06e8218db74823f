-- Subject keys: the data keys that seal personal data in events, wrapped
-- by the key-encryption key. Deliberately not append-only: an erasure
-- deletes a subject's keys, so what they sealed can no longer be read,
-- while the events (and their audit hashes) stay as they are.
CREATE TABLE subject_keys (
    key_id  TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    wrapped TEXT NOT NULL
);

CREATE INDEX subject_keys_by_subject ON subject_keys (subject);
