-- Variants a processing worker wrote for a photo deleted meanwhile (erasure, retention, clean-up), whose
-- deletion from storage failed: no row of the photo leads to them any more, so their keys are kept here
-- until the clean-up job deletes them (storage first, then the row).
CREATE TABLE leftover_variants (
    key       text PRIMARY KEY,
    listed_at timestamptz NOT NULL DEFAULT now()
);
