-- Local copies fed by identity's events: whom to tell, how to reach them, and group names.
CREATE TABLE people (
    person_id    uuid PRIMARY KEY,
    school_id    uuid NOT NULL,
    email        text NOT NULL,
    display_name text NOT NULL,
    locale       text NOT NULL DEFAULT 'nl'
);

CREATE TABLE groups (
    group_id  uuid PRIMARY KEY,
    school_id uuid NOT NULL,
    name      text NOT NULL
);

-- Columns as shared.membership_copy expects them.
CREATE TABLE memberships (
    group_id  uuid NOT NULL,
    person_id uuid NOT NULL,
    role      text NOT NULL,
    active    boolean NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (group_id, person_id)
);

-- A browser's Web Push subscription (RFC 8030); the endpoint is the push service's URL for it.
CREATE TABLE devices (
    device_id  uuid PRIMARY KEY,
    person_id  uuid NOT NULL,
    endpoint   text NOT NULL UNIQUE,
    p256dh     text NOT NULL,
    auth       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_person ON devices (person_id);

-- What happened that parents are told about (for now: a post), kept for the deliveries' texts.
CREATE TABLE notifications (
    notification_id uuid PRIMARY KEY,
    school_id       uuid,
    group_id        uuid NOT NULL,
    post_id         uuid NOT NULL UNIQUE,
    excerpt         text NOT NULL,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per message to send: one email per parent, one push per parent's device.
CREATE TABLE deliveries (
    delivery_id     uuid PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications,
    person_id       uuid NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'push')),
    -- No foreign key: a device may be removed while its deliveries stay as history.
    device_id       uuid,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CHECK ((channel = 'push') = (device_id IS NOT NULL))
);
-- Exactly once: one email per parent, one push per device, for each notification.
CREATE UNIQUE INDEX deliveries_one_email ON deliveries (notification_id, person_id) WHERE channel = 'email';
CREATE UNIQUE INDEX deliveries_one_push ON deliveries (notification_id, device_id) WHERE channel = 'push';
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
