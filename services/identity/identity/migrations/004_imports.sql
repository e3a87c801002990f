-- Class-list imports (issue 5): one row per uploaded file, its progress and its outcome, so that any
-- replica can answer GET /imports/{id}. The file itself is not kept: a failed import is uploaded
-- again (applying is one transaction and idempotent, so that is always safe).
CREATE TABLE imports (
    import_id      uuid PRIMARY KEY,
    school_id      uuid NOT NULL REFERENCES schools,
    school_year_id uuid NOT NULL REFERENCES school_years,
    created_by     uuid NOT NULL REFERENCES accounts,
    status         text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    dry_run        boolean NOT NULL,
    skip_invalid   boolean NOT NULL,
    create_groups  boolean NOT NULL,
    applied        boolean NOT NULL DEFAULT false,
    encoding       text NOT NULL,
    delimiter      text NOT NULL,
    columns        jsonb NOT NULL,
    rows_total     int NOT NULL,
    rows_done      int NOT NULL DEFAULT 0,
    counts         jsonb NOT NULL DEFAULT '{}',
    errors         jsonb NOT NULL DEFAULT '[]',
    children       jsonb NOT NULL DEFAULT '[]',
    not_in_file    jsonb NOT NULL DEFAULT '[]',
    failure        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Written with every progress step: a queued or running import silent for long has died.
    heartbeat_at   timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX imports_school ON imports (school_id, created_at);
CREATE INDEX imports_unfinished ON imports (heartbeat_at) WHERE status IN ('queued', 'running');
