-- Children erased at their school's request (identity's ChildErased, GDPR art. 17): the id, the
-- school and when, never a name. An event naming such a child that is handled after the erasure
-- (handled at the same time, retried after a failure, or published by posts before it dropped the
-- child's bookings) queues no mail or notice that names the child (erasure.py).
CREATE TABLE erased_children (
    child_id  uuid PRIMARY KEY,
    school_id uuid NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now()
);

-- A school's digests by when they were made: a deleted post is taken out of (an edited one changed
-- in) the digests made after it (message_store.py), an erased child's name out of all of the
-- school's (erasure.py).
CREATE INDEX notifications_digests ON notifications (school_id, created_at) WHERE kind = 'digest';
