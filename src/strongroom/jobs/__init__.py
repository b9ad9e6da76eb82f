"""Unattended operation: the policy file, schedules, notifications and metrics used by `run`.

These modules hold no repository logic of their own: ``commands/run.py`` drives the existing use
cases (backup, forget, prune, check, copy) from a parsed policy file and reports through them."""
