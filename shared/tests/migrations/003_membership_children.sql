-- The optional column a copy that counts families has (posts).
ALTER TABLE memberships ADD COLUMN children uuid[] NOT NULL DEFAULT '{}';
