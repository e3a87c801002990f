-- Posts' copy of media's photos (PhotoChanged, issue 9 case 8): when a post is written, posts knows which
-- photos its writer may attach: their own uploads of that group, processing or ready, in no other post,
-- showing no child without photo consent. Newest revision wins; a removed photo stays as a row.
CREATE TABLE photo_copies (
    photo_id        uuid PRIMARY KEY,
    school_id       uuid NOT NULL,
    group_id        uuid NOT NULL,
    uploader_id     uuid NOT NULL,
    status          text NOT NULL CHECK (status IN ('processing', 'ready', 'rejected', 'removed')),
    reason          text,
    without_consent uuid[] NOT NULL DEFAULT '{}',
    revision        bigint NOT NULL
);
-- "Already in another post": the posts naming a photo.
CREATE INDEX post_photos_photo ON post_photos (photo_id);
