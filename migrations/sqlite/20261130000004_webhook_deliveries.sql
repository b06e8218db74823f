-- One row per webhook delivery attempt (status, latency, error).
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    status       INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    time         TEXT    NOT NULL,
    redelivery   BOOLEAN NOT NULL
);

CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription, id);
