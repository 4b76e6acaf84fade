-- The data key an interaction's personal fields were sealed under (shared/vault.py): entries are published
-- sealed again under it, and an entry whose key was shredded is not published.
ALTER TABLE timeline.entries ADD COLUMN sealkey text;
