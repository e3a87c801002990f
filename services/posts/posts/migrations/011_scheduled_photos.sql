-- Photos of send-later posts (issue 9 / issue 6): media attaches a post's photos only when it appears, so
-- posts tells it which photos a post waiting for its send-later time names (posts.scheduled_photos_changed),
-- and media keeps them from the one-day clean-up of unused uploads. photos_revision grows with every such
-- word (the post's row is locked by the change), so media keeps only the newest.
ALTER TABLE posts ADD COLUMN photos_revision bigint NOT NULL DEFAULT 0;
