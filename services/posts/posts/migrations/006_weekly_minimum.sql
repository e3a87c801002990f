-- The weekly minimum of seed rule 5 (issue 6): the quiet-group check and the admin's posting report.

-- The group's school year's first and last day (local dates, from GroupChanged): which groups belong to
-- the school year that holds a date, and the weeks a report covers. NULL for groups copied before
-- identity sent them, until `python -m identity.republish` (or the group's next change) fills them.
ALTER TABLE groups ADD COLUMN year_starts_on date, ADD COLUMN year_ends_on date;

-- One row per group and ISO week (of the school's local calendar) that the weekly check found quiet:
-- the key makes the reminder once per group-week across job runs and replicas. event_id is the
-- GroupQuiet sent (uuid5 of group and week), NULL when the group had no teacher to remind.
CREATE TABLE quiet_weeks (
    group_id           uuid NOT NULL,
    week_starts_on     date NOT NULL CHECK (extract(isodow FROM week_starts_on) = 1),
    school_id          uuid NOT NULL,
    posts              int NOT NULL,
    min_posts_per_week int NOT NULL,
    teacher_ids        uuid[] NOT NULL,
    event_id           uuid,
    checked_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, week_starts_on)
);

-- A group's own posts (not announcements, not deleted) by the local day they appear: the weekly count.
CREATE INDEX posts_group_day ON posts (group_id, local_day) WHERE announcement_id IS NULL AND deleted_at IS NULL;
