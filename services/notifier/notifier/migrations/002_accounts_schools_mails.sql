-- One account per email address across the deployment: a person no longer belongs to one school.
ALTER TABLE people DROP COLUMN school_id;
-- Copies apply an event only if its revision is newer than what they hold (events may arrive out of
-- order). Rows copied before revisions existed start below any revision identity hands out.
ALTER TABLE people ADD COLUMN revision bigint NOT NULL DEFAULT -1;
ALTER TABLE groups ADD COLUMN revision bigint NOT NULL DEFAULT -1;

-- What mails need of a school: its name and the time zone its dates are shown in.
CREATE TABLE schools (
    school_id uuid PRIMARY KEY,
    name      text NOT NULL,
    time_zone text NOT NULL,
    locale    text NOT NULL DEFAULT 'nl',
    revision  bigint NOT NULL
);

-- One-off mails to an address that need not have an account yet: invitations (and reminders) with
-- an access code, password resets and welcomes with a reset token. The id is the event's, so a
-- redelivered event never makes a second mail. The secret is kept only until the mail is sent or
-- given up on.
CREATE TABLE mails (
    mail_id         uuid PRIMARY KEY,
    kind            text NOT NULL
        CHECK (kind IN ('invitation', 'invitation_reminder', 'password_reset', 'welcome')),
    school_id       uuid,
    -- The account a reset or welcome is for: its name greets the reader when the copy has it.
    person_id       uuid,
    to_email        text NOT NULL,
    locale          text NOT NULL DEFAULT 'nl',
    -- What the event said besides the secret (school and child name, expiry, reminder number).
    context         jsonb NOT NULL,
    secret          text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CHECK (status = 'pending' OR secret IS NULL)
);
CREATE INDEX mails_due ON mails (next_attempt_at) WHERE status = 'pending';
