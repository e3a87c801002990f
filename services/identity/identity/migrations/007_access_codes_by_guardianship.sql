-- Whether a guardianship is still to be invited (invitations.store.pending_among) looks for its
-- withdrawn codes too, which the partial index access_codes_open does not hold: without this index
-- every guardianship checked scanned all access codes. A 2,000-pupil import into a school that
-- invites took 8, 26, then 38 s as codes accumulated over three rounds; with it, a steady ~4 s.
CREATE INDEX access_codes_guardianship ON access_codes (guardianship_id);
