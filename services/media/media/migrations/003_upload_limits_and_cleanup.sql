-- Upload limits count a person's and a school's recent uploads; the clean-up finds unused uploads by age.
CREATE INDEX photos_by_uploader ON photos (uploader_id, created_at);
CREATE INDEX photos_by_school ON photos (school_id, created_at);
CREATE INDEX photos_unused ON photos (created_at) WHERE status = 'uploaded';
-- An original is deleted from storage once its photo is ready or rejected (originals are never served and
-- carry all the camera's metadata); the key is cleared when it is gone.
ALTER TABLE photos ALTER COLUMN original_key DROP NOT NULL;
CREATE INDEX photos_original_to_delete ON photos (processed_at)
    WHERE status IN ('ready', 'rejected') AND original_key IS NOT NULL;
