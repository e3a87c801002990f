-- Uploads refused after a decode in the worker processes: they cost as much as accepted ones, so they
-- count towards a person's hourly upload limit. Kept for an hour (the clean-up deletes older ones).
CREATE TABLE upload_refusals (
    person_id  uuid NOT NULL,
    school_id  uuid NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_refusals_by_person ON upload_refusals (person_id, refused_at);
