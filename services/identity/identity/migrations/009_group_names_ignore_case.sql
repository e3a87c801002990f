-- A group's name is unique in its school year whatever its case: "Groep 1" and "groep 1" are one
-- group, so an import naming either finds the same one.
ALTER TABLE groups DROP CONSTRAINT groups_name_per_year;
CREATE UNIQUE INDEX groups_name_per_year ON groups (school_year_id, lower(name));
