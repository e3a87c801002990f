-- Copy of media's accepted attachments (AttachmentUploaded): a post names only its writer's own unused
-- attachments of its group, and readers see their names, types and sizes. post_id: the post that uses it
-- (one post at most); position: its place in that post.
CREATE TABLE attachments (
    attachment_id uuid PRIMARY KEY,
    group_id      uuid NOT NULL,
    uploader_id   uuid NOT NULL,
    filename      text NOT NULL,
    content_type  text NOT NULL,
    size_bytes    bigint NOT NULL,
    post_id       uuid REFERENCES posts ON DELETE SET NULL,
    position      int,
    uploaded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_by_post ON attachments (post_id, position) WHERE post_id IS NOT NULL;
