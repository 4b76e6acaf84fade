-- The order splits were applied in: an entry that arrives later follows the latest split its identifiers fall
-- under (an undone merge, merged again and split once more, must not send it back to where the undo put it).
ALTER TABLE timeline.splits ADD COLUMN seq bigserial;
