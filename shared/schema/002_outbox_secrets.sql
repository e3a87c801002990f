-- Payload fields that carry a secret; the relay removes them once the broker has confirmed the event.
ALTER TABLE outbox ADD COLUMN secret_fields text[] NOT NULL DEFAULT '{}';
