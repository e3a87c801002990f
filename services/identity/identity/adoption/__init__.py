"""Adoption: how many families a school has reached (seed rule 10)."""
