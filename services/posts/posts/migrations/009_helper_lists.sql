-- Activities and helper-parent lists (hulpouders, seed rule 7, issue 7): a teacher's list of items
-- with a capacity each, parents sign up until the deadline, a waiting list per item.

-- A list belongs to one group of one school year: memberships are derived for the current year only,
-- so a list ends with its year for everyone who is not a member any more.
CREATE TABLE helper_lists (
    list_id     uuid PRIMARY KEY,
    group_id    uuid NOT NULL,
    school_id   uuid NOT NULL,
    school_year text NOT NULL,
    author_id   uuid NOT NULL,
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    activity_on date,
    deadline    timestamptz NOT NULL,
    closed_at   timestamptz,
    closed_by   uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX helper_lists_group ON helper_lists (group_id, created_at DESC, list_id DESC);

-- Sign-ups of an item are decided with the item's row locked (FOR UPDATE): concurrent sign-ups and
-- withdrawals of one item wait for each other, so `capacity` is never exceeded and promotions happen once.
CREATE TABLE helper_items (
    item_id  uuid PRIMARY KEY,
    list_id  uuid NOT NULL REFERENCES helper_lists ON DELETE CASCADE,
    position int NOT NULL,
    title    text NOT NULL,
    capacity int NOT NULL CHECK (capacity >= 1),
    UNIQUE (list_id, position)
);

-- One row per parent per item (at most once): 'signed_up' holds a place, 'waiting' is in line by
-- `queued` (taken from a sequence under the item's lock, so it is the order of arrival).
-- A withdrawal deletes the row; signing up again queues at the end.
CREATE TABLE helper_signups (
    signup_id   uuid PRIMARY KEY,
    item_id     uuid NOT NULL REFERENCES helper_items ON DELETE CASCADE,
    list_id     uuid NOT NULL REFERENCES helper_lists ON DELETE CASCADE,
    person_id   uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('signed_up', 'waiting')),
    queued      bigint GENERATED ALWAYS AS IDENTITY,
    signed_at   timestamptz NOT NULL DEFAULT now(),
    promoted_at timestamptz,
    UNIQUE (item_id, person_id)
);
CREATE INDEX helper_signups_line ON helper_signups (item_id, status, queued);
CREATE INDEX helper_signups_person ON helper_signups (person_id, list_id);

-- The display names of accounts (identity's AccountChanged, newest revision wins), so a teacher sees
-- who signed up by name. Only the name: posts has no use for addresses.
CREATE TABLE account_names (
    person_id    uuid PRIMARY KEY,
    display_name text NOT NULL,
    revision     bigint NOT NULL
);
