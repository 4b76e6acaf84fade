-- The merge-aware customer timeline. One row per upstream event (entry_id derives from tenant, source and id),
-- re-keyed to the survivor when customers merge. payload holds the entry's JSON (without customer_id) as text.
CREATE SCHEMA IF NOT EXISTS timeline;

CREATE TABLE timeline.entries (
    tenant       text NOT NULL,
    entry_id     text NOT NULL,
    customer_id  text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    seq          bigserial NOT NULL,
    kind         text NOT NULL,
    channel      text NOT NULL,
    source       text NOT NULL,
    event_id     text NOT NULL,
    payload      text NOT NULL,
    published    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, entry_id)
);
CREATE INDEX entries_by_customer ON timeline.entries (tenant, customer_id, occurred_at DESC, seq DESC);
CREATE INDEX entries_unpublished ON timeline.entries (seq) WHERE NOT published;

-- Customer ids that were merged away → the survivor (kept flat: a survivor is never itself an alias).
CREATE TABLE timeline.aliases (
    tenant      text NOT NULL,
    merged_id   text NOT NULL,
    survivor_id text NOT NULL,
    PRIMARY KEY (tenant, merged_id)
);
CREATE INDEX aliases_survivor ON timeline.aliases (tenant, survivor_id);

CREATE TABLE timeline.applied_merges (
    tenant     text NOT NULL,
    merge_id   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, merge_id)
);

CREATE TABLE timeline.customers (
    tenant           text NOT NULL,
    customer_id      text NOT NULL,
    first_contact_at timestamptz NOT NULL,
    last_contact_at  timestamptz NOT NULL,
    entry_count      bigint NOT NULL,
    channels         text[] NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);

CREATE TABLE timeline.identifiers (
    tenant      text NOT NULL,
    id_type     text NOT NULL,
    value       text NOT NULL,
    customer_id text NOT NULL,
    PRIMARY KEY (tenant, id_type, value)
);
CREATE INDEX timeline_identifiers_customer ON timeline.identifiers (tenant, customer_id);
