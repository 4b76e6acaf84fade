-- The identifiers each entry's event carried ("type:value"), so that a split moves exactly the entries that
-- only the detached identifiers link to.
ALTER TABLE timeline.entries ADD COLUMN identifiers text[] NOT NULL DEFAULT '{}';

-- Customer ids whose data was erased: redelivered or replayed events for them are not stored again.
CREATE TABLE timeline.erased (
    tenant      text NOT NULL,
    customer_id text NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, customer_id)
);

-- Applied splits: an entry that arrives later for the split customer and that only the detached identifiers link
-- to belongs to the new customer, whatever order the topic's partitions are read in.
CREATE TABLE timeline.splits (
    tenant          text NOT NULL,
    split_id        text NOT NULL,
    customer_id     text NOT NULL,
    new_customer_id text NOT NULL,
    identifiers     text[] NOT NULL,
    PRIMARY KEY (tenant, split_id)
);
CREATE INDEX splits_customer ON timeline.splits (tenant, customer_id);
