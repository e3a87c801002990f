-- Native app devices beside browsers: an Android app's FCM registration token, an iPhone app's APNs
-- device token. A Web Push device keeps its endpoint and keys; a native one has only its token.
ALTER TABLE devices ADD COLUMN kind text NOT NULL DEFAULT 'webpush'
    CHECK (kind IN ('webpush', 'fcm', 'apns'));
ALTER TABLE devices ADD COLUMN token text;
ALTER TABLE devices ALTER COLUMN endpoint DROP NOT NULL;
ALTER TABLE devices ALTER COLUMN p256dh DROP NOT NULL;
ALTER TABLE devices ALTER COLUMN auth DROP NOT NULL;
ALTER TABLE devices ADD CONSTRAINT devices_shape CHECK (
    CASE kind
        WHEN 'webpush' THEN endpoint IS NOT NULL AND p256dh IS NOT NULL AND auth IS NOT NULL AND token IS NULL
        ELSE token IS NOT NULL AND endpoint IS NULL AND p256dh IS NULL AND auth IS NULL
    END);
-- One row per app installation: a token names one app on one device at its provider.
CREATE UNIQUE INDEX devices_native_token ON devices (kind, token) WHERE token IS NOT NULL;

-- /metrics counts sent and failed rows of a recent window only, and the backlog (every state but sent
-- and failed) through a partial index, so the figures never scan a table that grows with every post.
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX deliveries_backlog ON deliveries (channel, status) WHERE status NOT IN ('sent', 'failed');
CREATE INDEX mails_created ON mails (created_at);

-- Who sends each delivery: 'smtp', or the device's kind for a push. Each provider is claimed by its
-- own free send slots, so an outage of one (timeouts at APNs) never holds up the others.
ALTER TABLE deliveries ADD COLUMN provider text;
UPDATE deliveries d SET provider = CASE WHEN d.channel = 'email' THEN 'smtp'
    ELSE coalesce((SELECT kind FROM devices v WHERE v.device_id = d.device_id), 'webpush') END;
ALTER TABLE deliveries ALTER COLUMN provider SET NOT NULL;
-- Filled in as rows are made, whoever makes them (a post, a notice, a digest).
CREATE FUNCTION deliveries_provider() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.provider IS NULL THEN
        NEW.provider := CASE WHEN NEW.channel = 'email' THEN 'smtp'
            ELSE coalesce((SELECT kind FROM devices WHERE device_id = NEW.device_id), 'webpush') END;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER deliveries_provider BEFORE INSERT ON deliveries
    FOR EACH ROW EXECUTE FUNCTION deliveries_provider();
CREATE INDEX deliveries_due_provider ON deliveries (provider, next_attempt_at) WHERE status = 'pending';
