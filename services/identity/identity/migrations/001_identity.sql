CREATE TABLE schools (
    school_id  uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE people (
    person_id     uuid PRIMARY KEY,
    school_id     uuid NOT NULL REFERENCES schools,
    role          text NOT NULL CHECK (role IN ('admin', 'teacher', 'guardian')),
    email         text NOT NULL,
    display_name  text NOT NULL,
    locale        text NOT NULL DEFAULT 'nl' CHECK (locale IN ('nl', 'en')),
    password_hash text,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- One account per address: a login names exactly one person.
CREATE UNIQUE INDEX people_email ON people (lower(email));

CREATE TABLE groups (
    group_id    uuid PRIMARY KEY,
    school_id   uuid NOT NULL REFERENCES schools,
    name        text NOT NULL,
    school_year text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (school_id, school_year, name)
);

-- Every grant and revocation takes a new revision, carried by its event, so the services' copies
-- can tell an older event from a newer one. A revoked link stays as an inactive row.
CREATE SEQUENCE membership_revisions;

CREATE TABLE memberships (
    group_id   uuid NOT NULL REFERENCES groups,
    person_id  uuid NOT NULL REFERENCES people,
    role       text NOT NULL CHECK (role IN ('teacher', 'guardian')),
    active     boolean NOT NULL,
    revision   bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, person_id)
);

-- Login attempts per key (an address or a client IP) per window, for throttling guessing;
-- a successful login takes its attempt back.
CREATE TABLE login_attempts (
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    attempts     int NOT NULL,
    PRIMARY KEY (key, window_start)
);
