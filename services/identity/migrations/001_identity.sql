-- The identity graph: customers (merged ones keep their row as an alias), identifiers, processed events and
-- the merge log, which doubles as the outbox for merge events (published = false until Kafka acknowledged).
CREATE SCHEMA IF NOT EXISTS identity;

CREATE TABLE identity.customers (
    tenant            text NOT NULL,
    customer_id       text NOT NULL,
    seq               bigserial NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by_source text NOT NULL,
    created_by_event  text NOT NULL,
    merged_into       text,
    merged_at         timestamptz,
    PRIMARY KEY (tenant, customer_id)
);
CREATE INDEX customers_merged_into ON identity.customers (tenant, merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE identity.identifiers (
    tenant        text NOT NULL,
    id_type       text NOT NULL,
    value         text NOT NULL,
    customer_id   text NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    linked_by_source text NOT NULL,
    linked_by_event  text NOT NULL,
    PRIMARY KEY (tenant, id_type, value)
);
CREATE INDEX identifiers_customer ON identity.identifiers (tenant, customer_id);

CREATE TABLE identity.processed_events (
    tenant       text NOT NULL,
    source       text NOT NULL,
    event_id     text NOT NULL,
    customer_id  text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, source, event_id)
);

CREATE TABLE identity.merges (
    merge_id       text PRIMARY KEY,
    tenant         text NOT NULL,
    survivor_id    text NOT NULL,
    merged_ids     text[] NOT NULL,
    rule           text NOT NULL,
    linking        jsonb NOT NULL,
    trigger_source text NOT NULL,
    trigger_event  text NOT NULL,
    merged_at      timestamptz NOT NULL DEFAULT now(),
    published      boolean NOT NULL DEFAULT false
);
CREATE INDEX merges_unpublished ON identity.merges (merged_at) WHERE NOT published;
