-- Copies of a child elsewhere (posts: the name for sign-ups; media: photo consent for tagged photos)
-- follow ChildChanged events (issue 9). Every change of a name or of photo consent gives the child a
-- new revision, whoever writes it (the families API, an import, anything later): a trigger, so that
-- no writer can forget. ``published_revision`` is the last revision put in the outbox;
-- identity.families.changes publishes every child whose revision is ahead of it.
CREATE SEQUENCE child_revisions;
ALTER TABLE children ADD COLUMN revision bigint NOT NULL DEFAULT nextval('child_revisions');
ALTER TABLE children ADD COLUMN published_revision bigint NOT NULL DEFAULT 0;

CREATE FUNCTION children_next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.given_name, NEW.tussenvoegsel, NEW.family_name, NEW.photo_consent)
       IS DISTINCT FROM (OLD.given_name, OLD.tussenvoegsel, OLD.family_name, OLD.photo_consent) THEN
        NEW.revision := nextval('child_revisions');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER children_revision BEFORE UPDATE ON children
    FOR EACH ROW EXECUTE FUNCTION children_next_revision();

-- A child's erasure (GDPR art. 17) as a record that it happened, without any of the child's data:
-- the school can show when and by whom it was done.
CREATE TABLE child_erasures (
    child_id   uuid PRIMARY KEY,
    school_id  uuid NOT NULL REFERENCES schools,
    erased_by  uuid NOT NULL REFERENCES accounts,
    erased_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX child_erasures_school ON child_erasures (school_id, erased_at);
