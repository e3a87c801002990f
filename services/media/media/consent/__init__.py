"""Children in photos (issue 9, seed rule 6): the teacher's tags, media's copy of each child's photo
consent, and the erasure of the photos of a child erased at the school's request."""
