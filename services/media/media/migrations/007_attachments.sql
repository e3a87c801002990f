-- Attachments such as the school's newsletter PDF (issue 6): uploaded by a teacher for one group, judged
-- by content at the door, served as they were uploaded (only to the members of their post's group).
CREATE TABLE attachments (
    attachment_id uuid PRIMARY KEY,
    school_id     uuid NOT NULL,
    group_id      uuid NOT NULL,
    uploader_id   uuid NOT NULL,
    -- As the uploader named it, made safe (no path, no control characters, at most 120 characters);
    -- the object's key is the server's own.
    filename      text NOT NULL,
    content_type  text NOT NULL,
    size_bytes    bigint NOT NULL,
    key           text NOT NULL,
    -- uploaded: waiting for a post; attached: in post_id; removed: taken out of its post, the post deleted,
    -- or unused for a day; its object is deleted from storage, then the row.
    status        text NOT NULL DEFAULT 'uploaded' CHECK (status IN ('uploaded', 'attached', 'removed')),
    post_id       uuid,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Upload limits count a person's and a school's recent uploads; the clean-up finds unused and removed ones.
CREATE INDEX attachments_by_uploader ON attachments (uploader_id, created_at);
CREATE INDEX attachments_by_school ON attachments (school_id, created_at);
CREATE INDEX attachments_by_post ON attachments (post_id) WHERE post_id IS NOT NULL;
CREATE INDEX attachments_to_delete ON attachments (created_at) WHERE status IN ('uploaded', 'removed');

-- Attachments refused at the door after the structural check: they count towards the hourly limit.
CREATE TABLE attachment_refusals (
    person_id  uuid NOT NULL,
    school_id  uuid NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachment_refusals_by_person ON attachment_refusals (person_id, refused_at);
