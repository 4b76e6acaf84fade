-- Entries stored but not yet acknowledged by Kafka: a row here from the commit that stored the entry until the
-- publish is acknowledged. A narrow table of its own, so marking an entry published deletes a small row instead
-- of rewriting the entry (the flag it replaces made every entry a second, non-HOT version with new index entries).
CREATE TABLE timeline.outbox (
    tenant   text NOT NULL,
    entry_id text NOT NULL,
    PRIMARY KEY (tenant, entry_id)
);
INSERT INTO timeline.outbox (tenant, entry_id) SELECT tenant, entry_id FROM timeline.entries WHERE NOT published;
DROP INDEX timeline.entries_unpublished;
ALTER TABLE timeline.entries DROP COLUMN published;
