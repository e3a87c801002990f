-- What each person wants to hear and when (issue 8): a channel and a timing per category of message,
-- and quiet hours. A person without a row gets the default: push where a device exists, else email,
-- immediately (preferences.py).
CREATE TABLE preferences (
    person_id  uuid NOT NULL,
    category   text NOT NULL CHECK (category IN ('posts', 'signups', 'reminders')),
    channel    text NOT NULL CHECK (channel IN ('auto', 'push', 'email', 'both', 'none')),
    timing     text NOT NULL CHECK (timing IN ('immediate', 'digest')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, category)
);

-- No push between starts and ends, school-local (a window may wrap midnight: 21:00-07:00).
CREATE TABLE quiet_hours (
    person_id uuid PRIMARY KEY,
    starts    time NOT NULL,
    ends      time NOT NULL,
    CHECK (starts <> ends)
);

-- When the school's daily digest goes out (SchoolChanged.digest_time, school-local HH:MM).
ALTER TABLE schools ADD COLUMN digest_time text NOT NULL DEFAULT '18:00';

-- A family with several children may book a conference early: the children a guardian belongs through.
ALTER TABLE memberships ADD COLUMN children uuid[] NOT NULL DEFAULT '{}';

-- A notification is no longer only a post: any message kind (messages_kinds.py), with what its texts
-- need in context. dedupe_key makes an event that arrives twice (or twice with a different id, like
-- the weekly quiet-group check) one notification.
ALTER TABLE notifications ALTER COLUMN group_id DROP NOT NULL;
ALTER TABLE notifications ALTER COLUMN post_id DROP NOT NULL;
ALTER TABLE notifications ADD COLUMN kind text NOT NULL DEFAULT 'new_post';
ALTER TABLE notifications ADD COLUMN context jsonb NOT NULL DEFAULT '{}';
ALTER TABLE notifications ADD COLUMN urgent boolean NOT NULL DEFAULT false;
ALTER TABLE notifications ADD COLUMN dedupe_key text UNIQUE;

-- Held: not to be sent yet. hold_reason says why: quiet hours (a push, until hold_until), a digest
-- (an email, until the digest job takes it into a digest: digest_delivery_id), or scheduled (a
-- message for a later moment, e.g. the day-before reminder, until hold_until).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'held', 'sent', 'failed'));
ALTER TABLE deliveries ADD COLUMN hold_reason text CHECK (hold_reason IN ('quiet_hours', 'digest', 'scheduled'));
ALTER TABLE deliveries ADD COLUMN hold_until timestamptz;
ALTER TABLE deliveries ADD COLUMN digest_delivery_id uuid;
CREATE INDEX deliveries_held ON deliveries (hold_until) WHERE status = 'held';
CREATE INDEX deliveries_for_digest ON deliveries (person_id) WHERE status = 'held' AND hold_reason = 'digest';
CREATE INDEX deliveries_in_digest ON deliveries (digest_delivery_id) WHERE digest_delivery_id IS NOT NULL;

-- The key one-click unsubscribe links are signed with (HMAC-SHA256): made here, once per deployment,
-- from two random UUIDs (244 random bits), so every replica signs and checks with the same key.
CREATE TABLE unsubscribe_keys (
    key_id int PRIMARY KEY,
    key    bytea NOT NULL
);
INSERT INTO unsubscribe_keys (key_id, key)
VALUES (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
