-- The children through whom a guardian belongs to a group (sorted, no repeats): other services count
-- families (a family is a child) from it. Published with MembershipGranted; a change re-grants.
ALTER TABLE memberships ADD COLUMN children uuid[] NOT NULL DEFAULT '{}';
