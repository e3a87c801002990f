-- Device registrations, one row each, counted per person over the last hour by every replica alike
-- (device_limits.py: DEVICE_REGISTRATIONS_PER_HOUR). Rows older than an hour are deleted as later
-- registrations pass, so the table holds about an hour's registrations.
CREATE TABLE device_registrations (
    person_id     uuid NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_registrations_person ON device_registrations (person_id, registered_at);
CREATE INDEX device_registrations_age ON device_registrations (registered_at);

-- When the device was last registered (a re-registration of the same subscription or token counts):
-- the per-person cap (DEVICES_PER_PERSON) drops the least recently registered, not the oldest made.
ALTER TABLE devices ADD COLUMN registered_at timestamptz;
UPDATE devices SET registered_at = created_at;
ALTER TABLE devices ALTER COLUMN registered_at SET NOT NULL;
ALTER TABLE devices ALTER COLUMN registered_at SET DEFAULT now();

-- Invitation mails name a child (context.child_id since InvitationIssued carries it): a ChildErased
-- finds them by it (erasure.py).
CREATE INDEX mails_child ON mails ((context->>'child_id')) WHERE context ? 'child_id';
