-- School attachments (issue 6): a school admin's upload (group_id NULL, for the school) goes in the posts of
-- one announcement, one per group, so an attachment may be named by several posts: post_attachments holds
-- which post names which, in its order. announcement_id: the announcement a school's attachment went in
-- (it goes in no other). revision: grows with every change of the posts that name it, told to media
-- (posts.attachment_posts_changed; newest wins).
ALTER TABLE attachments ALTER COLUMN group_id DROP NOT NULL;
ALTER TABLE attachments ADD COLUMN school_id uuid;
ALTER TABLE attachments ADD COLUMN announcement_id uuid;
ALTER TABLE attachments ADD COLUMN revision bigint NOT NULL DEFAULT 0;

CREATE TABLE post_attachments (
    post_id       uuid NOT NULL REFERENCES posts ON DELETE CASCADE,
    attachment_id uuid NOT NULL REFERENCES attachments ON DELETE CASCADE,
    position      int NOT NULL,
    PRIMARY KEY (post_id, attachment_id)
);
CREATE INDEX post_attachments_by_attachment ON post_attachments (attachment_id);
INSERT INTO post_attachments (post_id, attachment_id, position)
    SELECT post_id, attachment_id, COALESCE(position, 0) FROM attachments WHERE post_id IS NOT NULL;
DROP INDEX attachments_by_post;
ALTER TABLE attachments DROP COLUMN post_id;
ALTER TABLE attachments DROP COLUMN position;
