-- The school's own world: accounts apart from their roles, school years, children, placements,
-- guardianships, access codes; memberships are derived from them (identity.memberships).

-- One account per email address across the deployment; what it may do lives in staff and
-- guardianships. The ids of today's people stay the account ids.
CREATE TABLE accounts (
    person_id     uuid PRIMARY KEY,
    email         text NOT NULL,
    display_name  text NOT NULL,
    locale        text NOT NULL DEFAULT 'nl' CHECK (locale IN ('nl', 'en')),
    password_hash text,
    disabled      boolean NOT NULL DEFAULT false,
    revision      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));
INSERT INTO accounts (person_id, email, display_name, locale, password_hash, disabled, created_at)
SELECT person_id, email, display_name, locale, password_hash, disabled, created_at FROM people;

ALTER TABLE schools
    ADD COLUMN time_zone text NOT NULL DEFAULT 'Europe/Amsterdam',
    ADD COLUMN locale text NOT NULL DEFAULT 'nl' CHECK (locale IN ('nl', 'en')),
    ADD COLUMN max_posts_per_day int NOT NULL DEFAULT 1 CHECK (max_posts_per_day BETWEEN 1 AND 10),
    ADD COLUMN min_posts_per_week int NOT NULL DEFAULT 1 CHECK (min_posts_per_week BETWEEN 0 AND 7),
    ADD COLUMN digest_time time NOT NULL DEFAULT '18:00',
    ADD COLUMN photo_retention_days int NOT NULL DEFAULT 365 CHECK (photo_retention_days BETWEEN 0 AND 3650),
    ADD COLUMN share_notice text NOT NULL DEFAULT
        'Deel foto''s uit Klaspost niet met anderen: niet via sociale media en niet via een screenshot.',
    ADD COLUMN access_code_days int NOT NULL DEFAULT 14 CHECK (access_code_days BETWEEN 1 AND 90),
    ADD COLUMN reminder_days int NOT NULL DEFAULT 7 CHECK (reminder_days BETWEEN 1 AND 60),
    ADD COLUMN max_reminders int NOT NULL DEFAULT 3 CHECK (max_reminders BETWEEN 0 AND 10),
    ADD COLUMN invitations_launched_at timestamptz,
    ADD COLUMN revision bigint NOT NULL DEFAULT 0;

-- Staff roles per school; one account may be admin and teacher, at several schools.
CREATE TABLE staff (
    school_id  uuid NOT NULL REFERENCES schools,
    person_id  uuid NOT NULL REFERENCES accounts,
    role       text NOT NULL CHECK (role IN ('admin', 'teacher')),
    -- The school's name for the person (not the account's, which belongs to its owner).
    display_name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, person_id, role)
);
CREATE INDEX staff_person ON staff (person_id);
INSERT INTO staff (school_id, person_id, role, display_name)
SELECT school_id, person_id, role, display_name FROM people WHERE role IN ('admin', 'teacher');

-- School years run from starts_on to ends_on (local dates, inclusive) and never overlap within a
-- school; the current one is the one holding today's local date, switched by the year job.
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE school_years (
    school_year_id uuid PRIMARY KEY,
    school_id      uuid NOT NULL REFERENCES schools,
    name           text NOT NULL CHECK (name ~ '^\d{4}-\d{4}$'),
    starts_on      date NOT NULL,
    ends_on        date NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (school_id, name),
    CHECK (ends_on > starts_on),
    EXCLUDE USING gist (school_id WITH =, daterange(starts_on, ends_on, '[]') WITH &&)
);
INSERT INTO school_years (school_year_id, school_id, name, starts_on, ends_on)
SELECT gen_random_uuid(), school_id, school_year,
       make_date(split_part(school_year, '-', 1)::int, 8, 1), make_date(split_part(school_year, '-', 2)::int, 7, 31)
FROM (SELECT DISTINCT school_id, school_year FROM groups) y;
ALTER TABLE schools ADD COLUMN current_year_id uuid REFERENCES school_years;

ALTER TABLE groups ADD COLUMN school_year_id uuid REFERENCES school_years;
UPDATE groups g SET school_year_id = y.school_year_id
FROM school_years y WHERE y.school_id = g.school_id AND y.name = g.school_year;
ALTER TABLE groups ALTER COLUMN school_year_id SET NOT NULL;
ALTER TABLE groups DROP CONSTRAINT groups_school_id_school_year_name_key;
ALTER TABLE groups DROP COLUMN school_year;
ALTER TABLE groups ADD COLUMN revision bigint NOT NULL DEFAULT 0;
ALTER TABLE groups ADD CONSTRAINT groups_name_per_year UNIQUE (school_year_id, name);
-- Which group became which at a promotion ("groep 3B becomes groep 4B"), for the next year's placements.
ALTER TABLE groups ADD COLUMN promoted_from uuid REFERENCES groups;

-- Which groups a teacher teaches (the year is the group's).
CREATE TABLE teaching (
    group_id   uuid NOT NULL REFERENCES groups,
    person_id  uuid NOT NULL REFERENCES accounts,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX teaching_person ON teaching (person_id);
INSERT INTO teaching (group_id, person_id)
SELECT m.group_id, m.person_id FROM memberships m WHERE m.role = 'teacher' AND m.active;

CREATE TABLE children (
    child_id      uuid PRIMARY KEY,
    school_id     uuid NOT NULL REFERENCES schools,
    -- The pupil administration's own number (ParnasSys leerlingnummer), when the import has one.
    external_id   text,
    given_name    text NOT NULL,
    tussenvoegsel text NOT NULL DEFAULT '',
    family_name   text NOT NULL,
    date_of_birth date,
    photo_consent boolean NOT NULL DEFAULT false,
    left_on       date,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX children_external_id ON children (school_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX children_school ON children (school_id, family_name, given_name);

-- One placement per child per school year.
CREATE TABLE placements (
    child_id       uuid NOT NULL REFERENCES children,
    school_year_id uuid NOT NULL REFERENCES school_years,
    group_id       uuid NOT NULL REFERENCES groups,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_id, school_year_id)
);
CREATE INDEX placements_group ON placements (group_id);

-- A guardian of a child as the school knows them (an email address), linked to an account once an
-- access code is redeemed. Any number per child.
CREATE TABLE guardianships (
    guardianship_id uuid PRIMARY KEY,
    child_id        uuid NOT NULL REFERENCES children,
    school_id       uuid NOT NULL REFERENCES schools,
    email           text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    person_id       uuid REFERENCES accounts,
    linked_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((person_id IS NULL) = (linked_at IS NULL))
);
CREATE UNIQUE INDEX guardianships_one_per_address ON guardianships (child_id, lower(email));
CREATE INDEX guardianships_person ON guardianships (person_id) WHERE person_id IS NOT NULL;
CREATE INDEX guardianships_school ON guardianships (school_id);

-- Invitations: a single-use access code per guardianship, stored only as a hash. A re-send makes a
-- new code and revokes the old one.
CREATE TABLE access_codes (
    code_id         uuid PRIMARY KEY,
    guardianship_id uuid NOT NULL REFERENCES guardianships ON DELETE CASCADE,
    -- The first characters in clear, to throttle guessing per prefix; the rest only as a hash.
    prefix          text NOT NULL,
    code_hash       bytea NOT NULL UNIQUE,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    reminders_sent  int NOT NULL DEFAULT 0,
    last_sent_at    timestamptz NOT NULL DEFAULT now(),
    used_at         timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX access_codes_open ON access_codes (guardianship_id) WHERE used_at IS NULL AND revoked_at IS NULL;

-- Memberships are now derived: links made by hand that no rule backs are revoked (with their events)
-- by the first derivation, which the year job runs for every school.
ALTER TABLE memberships DROP CONSTRAINT memberships_person_id_fkey;
ALTER TABLE memberships ADD CONSTRAINT memberships_person_id_fkey FOREIGN KEY (person_id) REFERENCES accounts;
CREATE INDEX memberships_person ON memberships (person_id) WHERE active;

DROP TABLE people;

-- Account revisions and school/group revisions for their events' ordering.
CREATE SEQUENCE change_revisions;

-- Single-use links to set a password (a reset, or a new staff member's welcome), stored as hashes.
CREATE TABLE password_resets (
    reset_id   uuid PRIMARY KEY,
    person_id  uuid NOT NULL REFERENCES accounts,
    token_hash bytea NOT NULL UNIQUE,
    purpose    text NOT NULL CHECK (purpose IN ('reset', 'welcome')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX password_resets_person ON password_resets (person_id);
