-- The columns shared.membership_copy expects, as the services create them.
CREATE TABLE memberships (
    group_id  uuid NOT NULL,
    person_id uuid NOT NULL,
    role      text NOT NULL,
    active    boolean NOT NULL,
    revision  bigint NOT NULL,
    PRIMARY KEY (group_id, person_id)
);
