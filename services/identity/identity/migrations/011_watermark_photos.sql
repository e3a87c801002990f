-- Seed rule 6: a school may have a visible "do not share" mark with its name put on every photo variant.
ALTER TABLE schools ADD COLUMN watermark_photos boolean NOT NULL DEFAULT false;
