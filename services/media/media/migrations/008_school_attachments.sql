-- School attachments (issue 6): a school admin's upload (group_id NULL) goes in one announcement, one post
-- per group, so an attachment is served to the members of several groups. Posts tells which posts name an
-- attachment (posts.attachment_posts_changed, newest revision wins); media keeps the groups of the
-- published ones. 'reserved': named only by posts waiting for their send-later time (not an unused upload,
-- not yet served).
ALTER TABLE attachments ALTER COLUMN group_id DROP NOT NULL;
ALTER TABLE attachments DROP CONSTRAINT attachments_status_check;
ALTER TABLE attachments ADD CONSTRAINT attachments_status_check
    CHECK (status IN ('uploaded', 'reserved', 'attached', 'removed'));
ALTER TABLE attachments ADD COLUMN posts_revision int NOT NULL DEFAULT 0;

-- The groups whose members may download an attachment: those of the published posts that name it.
CREATE TABLE attachment_groups (
    attachment_id uuid NOT NULL REFERENCES attachments ON DELETE CASCADE,
    group_id      uuid NOT NULL,
    PRIMARY KEY (attachment_id, group_id)
);
INSERT INTO attachment_groups (attachment_id, group_id)
    SELECT attachment_id, group_id FROM attachments WHERE status = 'attached';

-- Copy of identity's staff roles (identity.staff_changed): only a school's admins upload for the school.
CREATE TABLE staff (
    school_id uuid NOT NULL,
    person_id uuid NOT NULL,
    roles     text[] NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (school_id, person_id)
);
