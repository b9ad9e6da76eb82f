"""tqdm progress bars: only on a terminal, never for --json or when output is piped."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from strongroom.commands import Progress, ProgressCallback, ignore_progress


def progress_enabled(as_json: bool = False, quiet: bool = False) -> bool:
    return not as_json and not quiet and sys.stderr.isatty()


@contextmanager
def byte_progress(desc: str, enabled: bool, total: int | None = None,
                  count_label: str = "files") -> Iterator[ProgressCallback]:
    """A callback that shows items done, bytes, rate and (with a total) an ETA. A total may also
    arrive later with an event (a background size scan, or the first event of check)."""
    if not enabled:
        yield ignore_progress
        return
    from tqdm import tqdm  # imported only for a terminal: it costs ~10 % of the start-up time
    bar = tqdm(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
               dynamic_ncols=True, leave=False)
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
