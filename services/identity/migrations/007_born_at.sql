-- A customer's age is the time of the event that created it (then that event's source and id), not the order
-- rows were inserted in: the survivor of a merge, and so every customer id, no longer depends on the order in
-- which events from different partitions were processed (a replay in another order forms the same customers).
ALTER TABLE identity.customers ADD COLUMN born_at timestamptz;
