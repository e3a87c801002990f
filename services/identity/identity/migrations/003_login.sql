-- Login throttling that a stranger cannot turn against an account's owner, refresh tokens, and
-- throttled password resets (identity.login).

-- The fixed 15-minute windows per address and per IP address locked the owner out; they go.
DROP TABLE login_attempts;

-- One row per attempt that was let through to the password check (or to a reset), under each key it
-- counts for: "pair:<address> <client>", "address:<address>", "ip:<client ip>", "reset-…", …
-- A successful login deletes its rows again. Counts are taken over sliding windows.
CREATE TABLE login_failures (
    key       text NOT NULL,
    failed_at timestamptz NOT NULL,
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY
);
CREATE INDEX login_failures_key ON login_failures (key, failed_at);
CREATE INDEX login_failures_age ON login_failures (failed_at);

-- Clients that logged in to an address before: a device ("device:<sha-256 of its cookie>") or an
-- IP address ("ip:…"). They are not held back by what strangers do to the address.
CREATE TABLE known_clients (
    email           text NOT NULL,  -- lower-cased
    client          text NOT NULL,
    last_success_at timestamptz NOT NULL,
    PRIMARY KEY (email, client)
);
CREATE INDEX known_clients_age ON known_clients (last_success_at);

-- A family per login; every refresh replaces its token by a new one in the same family. A used
-- token presented again means it was copied: the whole family is revoked.
CREATE TABLE refresh_families (
    family_id  uuid PRIMARY KEY,
    person_id  uuid NOT NULL REFERENCES accounts,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX refresh_families_person ON refresh_families (person_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES refresh_families ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE INDEX password_resets_expiry ON password_resets (expires_at);
