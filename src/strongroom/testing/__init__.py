"""Helpers for tests and experiments (never used by the commands themselves)."""
