-- Local copy of identity's memberships, fed by events: who may see the photos of which group.
-- Columns as shared.membership_copy expects them.
CREATE TABLE memberships (
    group_id  uuid NOT NULL,
    person_id uuid NOT NULL,
    role      text NOT NULL,
    active    boolean NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (group_id, person_id)
);

CREATE TABLE photos (
    photo_id       uuid PRIMARY KEY,
    school_id      uuid NOT NULL,
    uploader_id    uuid NOT NULL,
    content_type   text NOT NULL,
    size_bytes     bigint NOT NULL,
    original_key   text NOT NULL,
    -- uploaded: waiting for a post; processing: attached to a post, variants being made;
    -- ready: variants in storage; rejected: not an acceptable image (reason says why).
    status         text NOT NULL DEFAULT 'uploaded' CHECK (status IN ('uploaded', 'processing', 'ready', 'rejected')),
    post_id        uuid,
    group_id       uuid,
    width          int,
    height         int,
    reject_reason  text,
    attempts       int NOT NULL DEFAULT 0,
    -- A worker claims a photo until this time; a crashed worker's claim runs out and another takes over.
    claimed_until  timestamptz,
    -- Of the request that published the post: processing logs and events carry it on.
    correlation_id text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    processed_at   timestamptz
);
CREATE INDEX photos_to_process ON photos (created_at) WHERE status = 'processing';

CREATE TABLE photo_variants (
    photo_id uuid NOT NULL REFERENCES photos ON DELETE CASCADE,
    size     int NOT NULL,
    key      text NOT NULL,
    width    int NOT NULL,
    height   int NOT NULL,
    bytes    int NOT NULL,
    PRIMARY KEY (photo_id, size)
);
