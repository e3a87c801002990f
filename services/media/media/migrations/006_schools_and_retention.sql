-- Local copy of identity's schools (SchoolChanged): what photos of a school carry (a watermark with its
-- name, in its language), the notice shown with them, and how long they are kept after their school year.
CREATE TABLE schools (
    school_id            uuid PRIMARY KEY,
    name                 text NOT NULL,
    locale               text NOT NULL,
    time_zone            text NOT NULL,
    watermark_photos     boolean NOT NULL,
    photo_retention_days int NOT NULL,
    share_notice         text NOT NULL,
    revision             bigint NOT NULL
);
-- The last day (local) of a group's school year (GroupChanged.year_ends_on): photo retention counts from it.
ALTER TABLE groups ADD COLUMN year_ends_on date;
-- Retention finds a school year's photos by group.
CREATE INDEX photos_by_group ON photos (group_id);
-- What the retention job removed, one row per round that removed something: the operator's record (and
-- the /metrics totals) of photos deleted for good.
CREATE TABLE photo_purges (
    purged_at timestamptz NOT NULL DEFAULT now(),
    schools   int NOT NULL,
    photos    int NOT NULL,
    variants  int NOT NULL,
    originals int NOT NULL
);
