-- Local copy of identity's groups: the school a group's photos belong to.
CREATE TABLE groups (
    group_id  uuid PRIMARY KEY,
    school_id uuid NOT NULL,
    revision  bigint NOT NULL
);
