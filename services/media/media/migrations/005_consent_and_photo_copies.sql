-- Issue 9, cases 4 and 8: an upload is processed as soon as it is accepted, so a post only ever names a
-- photo that is processing or ready. From here on ``status`` is the processing state alone (processing,
-- ready, rejected) and being in a post is ``post_id``; uploads still waiting as 'uploaded' are processed now.
UPDATE photos SET status = 'processing' WHERE status = 'uploaded';
ALTER TABLE photos DROP CONSTRAINT photos_status_check;
ALTER TABLE photos ADD CONSTRAINT photos_status_check CHECK (status IN ('processing', 'ready', 'rejected'));
ALTER TABLE photos ALTER COLUMN status SET DEFAULT 'processing';
DROP INDEX photos_unused;
CREATE INDEX photos_unused ON photos (created_at) WHERE post_id IS NULL AND status <> 'rejected';
CREATE INDEX photos_by_post ON photos (post_id) WHERE post_id IS NOT NULL;

-- Posts keeps a copy of each photo's state (PhotoChanged); every change published gets a new revision.
CREATE SEQUENCE photo_revisions;
ALTER TABLE photos ADD COLUMN revision bigint NOT NULL DEFAULT 0;

-- A child's erasure (ChildErased): the photos tagged with the child are marked, taken out of sight at once,
-- and deleted (variants, original, row) by the erasure drain, which retries while storage is unreachable.
ALTER TABLE photos ADD COLUMN erase_requested_at timestamptz;
CREATE INDEX photos_to_erase ON photos (erase_requested_at) WHERE erase_requested_at IS NOT NULL;

-- Local copy of identity's children (ChildChanged): only what media needs, the photo consent. An erased
-- child stays as a row without data, so that a late ChildChanged cannot bring the child back.
CREATE TABLE children (
    child_id      uuid PRIMARY KEY,
    school_id     uuid NOT NULL,
    photo_consent boolean NOT NULL,
    erased        boolean NOT NULL DEFAULT false,
    revision      bigint NOT NULL
);

-- The children a teacher tagged in a photo (the teacher's word; no face recognition).
CREATE TABLE photo_children (
    photo_id  uuid NOT NULL REFERENCES photos ON DELETE CASCADE,
    child_id  uuid NOT NULL,
    tagged_by uuid NOT NULL,
    tagged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (photo_id, child_id)
);
CREATE INDEX photo_children_child ON photo_children (child_id);
