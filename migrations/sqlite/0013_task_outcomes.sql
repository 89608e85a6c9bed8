-- What came of a call on the staff list: the outcome staff chose and
-- their note, recorded when the task is closed (API or CLI).
ALTER TABLE tasks ADD COLUMN outcome TEXT;
ALTER TABLE tasks ADD COLUMN note TEXT;
