-- Photos named by posts waiting for their send-later time (posts.scheduled_photos_changed, issue 9 /
-- issue 6): not unused uploads, so the one-day clean-up leaves them until the post appears
-- (PostPublished attaches them) or lets them go.
-- scheduled_posts: posts' newest revision handled per post (an older word changes nothing); appeared: the
-- post's PostPublished was handled, so any word still to come is older. Pruned by the clean-up.
CREATE TABLE scheduled_posts (
    post_id    uuid PRIMARY KEY,
    revision   bigint NOT NULL,
    appeared   boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now()
);
-- Which post reserves which photo. Rows, not one column, so that words of two posts handled out of order
-- (one let the photo go, the next took it) cannot clear each other's.
CREATE TABLE photo_reservations (
    photo_id uuid NOT NULL REFERENCES photos ON DELETE CASCADE,
    post_id  uuid NOT NULL REFERENCES scheduled_posts ON DELETE CASCADE,
    PRIMARY KEY (photo_id, post_id)
);
CREATE INDEX photo_reservations_by_post ON photo_reservations (post_id);
-- reserved: any photo_reservations row (kept on the row itself, so the clean-up's lock re-checks it when a
-- reservation commits under it). released_at: when the last reservation went; an upload let go gets a
-- day from then, as a new upload does.
ALTER TABLE photos ADD COLUMN reserved boolean NOT NULL DEFAULT false;
ALTER TABLE photos ADD COLUMN released_at timestamptz;
-- The clean-up's unused uploads, by the moment their day starts.
DROP INDEX photos_unused;
CREATE INDEX photos_unused ON photos ((GREATEST(created_at, released_at)))
    WHERE post_id IS NULL AND status <> 'rejected' AND NOT reserved;
