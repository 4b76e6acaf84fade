-- What each merged-away customer held when it was merged ({customer id: ["type:value", ...]}), so that the merge
-- can be undone; and when it was undone. Merges recorded before this column existed cannot be undone.
ALTER TABLE identity.merges ADD COLUMN held jsonb;
ALTER TABLE identity.merges ADD COLUMN undone_at timestamptz;
