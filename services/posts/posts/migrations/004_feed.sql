-- The feed, likes, reads and delivery figures (issue 6, the reading side).

-- Kept in the transaction that adds or removes a like: the feed reads it without counting rows.
ALTER TABLE posts ADD COLUMN like_count int NOT NULL DEFAULT 0 CHECK (like_count >= 0);

-- The feed reads posts_group_published (003): published, not deleted, newest appearance first.

-- The children through whom a guardian belongs to a group (identity's derivation): a family is a child.
ALTER TABLE memberships ADD COLUMN children uuid[] NOT NULL DEFAULT '{}';
CREATE INDEX memberships_group ON memberships (group_id) WHERE active;

-- One like per account per post (seed rule 9).
CREATE TABLE likes (
    post_id   uuid NOT NULL REFERENCES posts ON DELETE CASCADE,
    person_id uuid NOT NULL,
    liked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, person_id)
);

-- Who has opened a post, first time only.
CREATE TABLE reads (
    post_id   uuid NOT NULL REFERENCES posts ON DELETE CASCADE,
    person_id uuid NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, person_id)
);

-- What the notifier last reported of a post's messages (DeliveryReport, newest revision wins).
CREATE TABLE post_deliveries (
    post_id         uuid PRIMARY KEY,
    targeted        int NOT NULL,
    delivered_email int NOT NULL,
    delivered_push  int NOT NULL,
    failed          int NOT NULL,
    pending         int NOT NULL,
    held            int NOT NULL,
    revision        bigint NOT NULL,
    reported_at     timestamptz NOT NULL
);
