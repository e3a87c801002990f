"""Helpers for tests and benchmarks; never imported by service code."""
