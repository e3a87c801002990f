"""The weekly minimum of seed rule 5: the quiet-group check near the end of each school week, and the
school admin's posting report per group per week."""
