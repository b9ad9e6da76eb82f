"""Use cases: each function takes a Repository (or a location) and options, returns a result
object, and reports progress and warnings only through callbacks. Nothing here prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Progress:
    """A progress event: counts so far and the item being worked on."""

    files: int = 0
    bytes: int = 0
    current: str = ""
    total_bytes: int | None = None


ProgressCallback = Callable[[Progress], None]
WarningCallback = Callable[[str], None]


def ignore_progress(_: Progress) -> None:
    pass


def ignore_warning(_: str) -> None:
    pass
