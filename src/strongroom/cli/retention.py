"""Click commands for retention (registered on the main group by importing this module)."""

from __future__ import annotations

from strongroom.cli.commands import cli  # noqa: F401  (commands below attach to this group)
