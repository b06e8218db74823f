-- One row per webhook delivery attempt (status, latency, error).
CREATE TABLE webhook_deliveries (
    id           bigserial PRIMARY KEY,
    subscription text      NOT NULL,
    event_id     text      NOT NULL,
    position     bigint    NOT NULL,
    attempt      integer   NOT NULL,
    status       integer,
    latency_ms   bigint    NOT NULL,
    error        text,
    time         text      NOT NULL,
    redelivery   boolean   NOT NULL
);

CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription, id);
