-- Invitations: throttling of access-code guessing, launches as followable jobs, reminders.

-- Attempts at redeeming an access code per key (a client address, a code prefix, an account) per
-- fixed window; counted before the code is checked, taken back when it was right.
CREATE TABLE redeem_attempts (
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    attempts     int NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- A school's launch day: every pending guardian invited, in batches of one transaction each that
-- any replica may run. Guardianships are taken in id order; "cursor" is the last one done.
CREATE TABLE invitation_launches (
    launch_id   uuid PRIMARY KEY,
    school_id   uuid NOT NULL REFERENCES schools,
    status      text NOT NULL CHECK (status IN ('running', 'done')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    cursor      uuid,
    total       int NOT NULL,
    invited     int NOT NULL DEFAULT 0,
    skipped     int NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
-- One running launch per school: a second launch asked for meanwhile is the same one.
CREATE UNIQUE INDEX invitation_launches_running ON invitation_launches (school_id) WHERE status = 'running';
CREATE INDEX invitation_launches_school ON invitation_launches (school_id, started_at DESC);
