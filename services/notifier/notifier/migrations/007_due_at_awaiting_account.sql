-- The later moment a message is for (a day-before reminder, a conference opening), per delivery; NULL:
-- for the moment it was made. A push held for quiet hours is planned again from it when the person
-- changes their quiet hours (message_store.replan_held_pushes): released then, not before its moment.
ALTER TABLE deliveries ADD COLUMN due_at timestamptz;

-- Deliveries owed to a recipient whose account the copy did not have yet when the message was fanned
-- out (identity's AccountChanged handled after the membership or the message): made by their
-- preferences when the account arrives (message_store.deliver_awaited), with the default choice and
-- the moment the message had for them.
CREATE TABLE awaiting_account (
    notification_id uuid NOT NULL REFERENCES notifications,
    person_id       uuid NOT NULL,
    send_at         timestamptz,
    default_channel text NOT NULL CHECK (default_channel IN ('auto', 'push', 'email', 'both', 'none')),
    default_timing  text NOT NULL CHECK (default_timing IN ('immediate', 'digest')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, person_id)
);
CREATE INDEX awaiting_account_person ON awaiting_account (person_id);
