"""tqdm progress bars: only on a terminal, never for --json or when output is piped."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from tqdm import tqdm

from strongroom.commands import Progress, ProgressCallback, ignore_progress


def progress_enabled(as_json: bool = False, quiet: bool = False) -> bool:
    return not as_json and not quiet and sys.stderr.isatty()


def _terminal_columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


@contextmanager
def byte_progress(desc: str, enabled: bool, total: int | None = None,
                  count_label: str = "files") -> Iterator[ProgressCallback]:
    """A callback that shows items done, bytes, rate and (with a total) an ETA. A total may also
    arrive later with an event (a background size scan, or the first event of check)."""
    if not enabled:
        yield ignore_progress
        return
    # A terminal that reports no size (0x0: some `docker exec -t`, CI pseudo-terminals) would make
    # tqdm draw nothing at all (it takes the bar for off-screen); assume 80x24 there instead.
    sized = _terminal_columns() > 0
    bar = tqdm(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
               dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24, leave=False)
    try:
        def update(p: Progress) -> None:
            if p.total_bytes and bar.total != p.total_bytes:
                bar.total = p.total_bytes
                bar.refresh()
            if p.bytes > bar.n:
                bar.update(p.bytes - bar.n)
            bar.set_postfix({count_label: p.files}, refresh=False)
        yield update
    finally:
        bar.close()
