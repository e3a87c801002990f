-- Groups are copied from GroupChanged, applied only when newer than what the copy holds (events may
-- arrive out of order). Rows copied before revisions existed start below any revision identity hands out.
ALTER TABLE groups ADD COLUMN revision bigint NOT NULL DEFAULT -1;
