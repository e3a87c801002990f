-- Publishing: titles, "send later", urgent announcements, edits and deletes, and the posting policy.

-- Local copy of identity's schools (SchoolChanged): the time zone a school's days are counted in and
-- its posting policy. Newest revision wins.
CREATE TABLE schools (
    school_id          uuid PRIMARY KEY,
    time_zone          text NOT NULL,
    max_posts_per_day  int NOT NULL,
    min_posts_per_week int NOT NULL,
    revision           bigint NOT NULL
);

-- Local copy of identity's staff roles (StaffChanged): who administers a school. Newest revision wins;
-- a person no longer staff keeps a row with no roles, so an older event cannot bring a role back.
CREATE TABLE staff (
    school_id uuid NOT NULL,
    person_id uuid NOT NULL,
    roles     text[] NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (school_id, person_id)
);

-- published_at: when the post appeared for parents (NULL while it waits for publish_at, its "send
-- later" time). deleted_at: deleted posts stay as rows (events and the day's count refer to them) but
-- are shown nowhere. announcement_id: the posts of one announcement, one row per group.
ALTER TABLE posts
    ADD COLUMN title           text NOT NULL DEFAULT '',
    ADD COLUMN urgent          boolean NOT NULL DEFAULT false,
    ADD COLUMN announcement_id uuid,
    ADD COLUMN publish_at      timestamptz,
    ADD COLUMN published_at    timestamptz DEFAULT now(),
    ADD COLUMN local_day       date,
    ADD COLUMN updated_at      timestamptz,
    ADD COLUMN deleted_at      timestamptz;
UPDATE posts SET published_at = created_at;

-- What readers see: published, not deleted, newest appearance first, one index walk per group.
CREATE INDEX posts_group_published ON posts (group_id, published_at DESC, post_id DESC)
    WHERE published_at IS NOT NULL AND deleted_at IS NULL;
-- The send-later job finds the posts that are due.
CREATE INDEX posts_due ON posts (publish_at) WHERE published_at IS NULL AND deleted_at IS NULL;

-- The posting policy (seed rule 5): posts per group per local calendar day of the school. Counted
-- with a conditional upsert, so concurrent writers of one group are serialised on this row.
-- Announcements do not count (they are the school's, not the teacher's).
CREATE TABLE post_days (
    group_id  uuid NOT NULL,
    local_day date NOT NULL,
    posts     int NOT NULL CHECK (posts >= 0),
    PRIMARY KEY (group_id, local_day)
);

-- A post as readers see it: published and not deleted, with its group's name and its photos in order.
DROP VIEW post_views;
CREATE VIEW post_views AS
SELECT p.post_id, p.group_id, g.name AS group_name, p.author_id, p.title, p.body, p.urgent,
       p.announcement_id, p.created_at, p.published_at, p.updated_at,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('photo_id', ph.photo_id, 'status', ph.status) ORDER BY ph.position)
                 FROM post_photos ph WHERE ph.post_id = p.post_id), '[]'::jsonb) AS photos
FROM posts p JOIN groups g USING (group_id)
WHERE p.published_at IS NOT NULL AND p.deleted_at IS NULL;
