-- Upstream events already forwarded, by their CloudEvents identity: drops exact duplicates early.
CREATE SCHEMA IF NOT EXISTS ingestion;

CREATE TABLE ingestion.seen_events (
    tenant    text NOT NULL,
    source    text NOT NULL,
    event_id  text NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, source, event_id)
);
