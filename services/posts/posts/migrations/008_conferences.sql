-- Sign-ups (issue 7, seed rule 7): parent-teacher conferences, and the sign-up reference on posts.

-- A post that announces a sign-up (a conference schedule, a helper-parent list) points at it; the feed
-- shows the reference so that clients open the sign-up. Such posts are the platform's, not a teacher's
-- message: they are not counted against the posts per day of seed rule 5 (post_days).
ALTER TABLE posts
    ADD COLUMN signup_kind text CHECK (signup_kind IN ('conference', 'helper_list')),
    ADD COLUMN signup_id   uuid,
    ADD CONSTRAINT posts_signup_whole CHECK ((signup_kind IS NULL) = (signup_id IS NULL));
CREATE INDEX posts_signup ON posts (signup_id) WHERE signup_id IS NOT NULL;

-- Local copy of identity's children (ChildChanged): names for sign-ups. Newest revision wins.
-- ChildErased removes the row and leaves the id in erased_children, so a late ChildChanged cannot
-- bring the name back.
CREATE TABLE children (
    child_id    uuid PRIMARY KEY,
    school_id   uuid NOT NULL,
    given_name  text NOT NULL,
    family_name text NOT NULL,
    revision    bigint NOT NULL
);
CREATE TABLE erased_children (
    child_id  uuid PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT now()
);

-- A conference schedule of one school year, for the children of its groups (child_ids NULL: every
-- child of the groups, as they are when asked) or the ones chosen. Times are instants; the school's
-- time zone turns the local days and ranges they were given in into them.
CREATE TABLE conference_schedules (
    schedule_id     uuid PRIMARY KEY,
    school_id       uuid NOT NULL,
    school_year     text NOT NULL,
    title           text NOT NULL,
    location        text NOT NULL,
    slot_minutes    int NOT NULL CHECK (slot_minutes > 0),
    break_minutes   int NOT NULL CHECK (break_minutes >= 0),
    opens_at        timestamptz NOT NULL,
    early_opens_at  timestamptz,
    closes_at       timestamptz NOT NULL,
    change_deadline timestamptz NOT NULL,
    child_ids       uuid[],
    created_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (opens_at < closes_at),
    CHECK (early_opens_at IS NULL OR early_opens_at < opens_at)
);

CREATE TABLE conference_groups (
    schedule_id uuid NOT NULL REFERENCES conference_schedules ON DELETE CASCADE,
    group_id    uuid NOT NULL,
    PRIMARY KEY (schedule_id, group_id)
);
CREATE INDEX conference_groups_group ON conference_groups (group_id);

CREATE TABLE conference_slots (
    slot_id     uuid PRIMARY KEY,
    schedule_id uuid NOT NULL REFERENCES conference_schedules ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    CHECK (starts_at < ends_at),
    UNIQUE (schedule_id, starts_at)
);

-- One booking per slot and one per child and schedule: the database keeps both, whatever the
-- concurrency (the booking INSERT ... ON CONFLICT DO NOTHING and a move's UPDATE rely on them).
CREATE TABLE conference_bookings (
    booking_id  uuid PRIMARY KEY,
    schedule_id uuid NOT NULL REFERENCES conference_schedules ON DELETE CASCADE,
    slot_id     uuid NOT NULL REFERENCES conference_slots ON DELETE CASCADE,
    child_id    uuid NOT NULL,
    group_id    uuid NOT NULL,
    booked_by   uuid NOT NULL,
    booked_at   timestamptz NOT NULL DEFAULT now(),
    moved_at    timestamptz,
    CONSTRAINT conference_bookings_one_per_slot UNIQUE (slot_id),
    CONSTRAINT conference_bookings_one_per_child UNIQUE (schedule_id, child_id)
);
CREATE INDEX conference_bookings_child ON conference_bookings (child_id);

-- The "not booked yet" reminder two days before the window closes: once per schedule and child.
CREATE TABLE conference_reminders (
    schedule_id uuid NOT NULL REFERENCES conference_schedules ON DELETE CASCADE,
    child_id    uuid NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, child_id)
);

-- A person's calendar feed: an unguessable token in the URL, stored only as its SHA-256. Revoking
-- deletes the row, so the URL answers 404 from then on.
CREATE TABLE calendar_feeds (
    feed_id    uuid PRIMARY KEY,
    person_id  uuid NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calendar_feeds_person ON calendar_feeds (person_id);
