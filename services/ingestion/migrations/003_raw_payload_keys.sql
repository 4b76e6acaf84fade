-- The data keys (shared/vault.py) of the events a raw payload carried: once one is shredded (its customer was
-- erased), the payload is deleted too.
ALTER TABLE ingestion.raw_payloads ADD COLUMN kids text[] NOT NULL DEFAULT '{}';
CREATE INDEX raw_payloads_kids ON ingestion.raw_payloads USING gin (kids);
