-- Transactional outbox: events written in the same transaction as the change they describe.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    routing_key  text NOT NULL,
    envelope     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error   text
);
CREATE INDEX outbox_unsent ON outbox (next_attempt_at, id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Idempotent inbox: one row per handled event, written in the handler's own transaction.
CREATE TABLE inbox (
    event_id   uuid NOT NULL,
    handler    text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, handler)
);
CREATE INDEX inbox_handled_at ON inbox (handled_at);

-- Runs of periodic jobs, so an operator sees when each last ran and how it ended.
CREATE TABLE job_runs (
    name        text PRIMARY KEY,
    last_start  timestamptz,
    last_finish timestamptz,
    last_error  text
);
