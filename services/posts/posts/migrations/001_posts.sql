-- Local copy of identity's groups and memberships, fed by events: who may post and read where.
CREATE TABLE groups (
    group_id    uuid PRIMARY KEY,
    school_id   uuid NOT NULL,
    name        text NOT NULL,
    school_year text NOT NULL
);

-- Columns as shared.membership_copy expects them.
CREATE TABLE memberships (
    group_id  uuid NOT NULL,
    person_id uuid NOT NULL,
    role      text NOT NULL CHECK (role IN ('teacher', 'guardian')),
    active    boolean NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX memberships_person ON memberships (person_id) WHERE active;

CREATE TABLE posts (
    post_id    uuid PRIMARY KEY,
    group_id   uuid NOT NULL,
    school_id  uuid NOT NULL,
    author_id  uuid NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The feed reads the newest posts of each group: one index walk per group (LATERAL), no sort of all rows.
CREATE INDEX posts_group_newest ON posts (group_id, created_at DESC, post_id DESC);

CREATE TABLE post_photos (
    post_id  uuid NOT NULL REFERENCES posts ON DELETE CASCADE,
    photo_id uuid NOT NULL,
    position int NOT NULL,
    status   text NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'rejected')),
    PRIMARY KEY (post_id, photo_id)
);

-- A post as readers see it: with its group's name and its photos in order.
CREATE VIEW post_views AS
SELECT p.post_id, p.group_id, g.name AS group_name, p.author_id, p.body, p.created_at,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('photo_id', ph.photo_id, 'status', ph.status) ORDER BY ph.position)
                 FROM post_photos ph WHERE ph.post_id = p.post_id), '[]'::jsonb) AS photos
FROM posts p JOIN groups g USING (group_id);
