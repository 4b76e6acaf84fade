-- Splits and erasures requested by operators: an outbox of events (published = false until Kafka acknowledged).
CREATE TABLE identity.changes (
    change_id  text PRIMARY KEY,
    tenant     text NOT NULL,
    event_type text NOT NULL,
    subject    text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published  boolean NOT NULL DEFAULT false
);
CREATE INDEX changes_unpublished ON identity.changes (created_at) WHERE NOT published;

ALTER TABLE identity.customers ADD COLUMN erased_at timestamptz;
