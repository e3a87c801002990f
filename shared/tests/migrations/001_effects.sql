-- What the test handlers do: one row per time a handler took effect (no unique key on purpose).
CREATE TABLE effects (
    event_id uuid NOT NULL,
    n        int NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
