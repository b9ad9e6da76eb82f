"""Sorting more items than memory should hold: sorted runs in temporary files, merged."""

from __future__ import annotations

import heapq
import pickle
import tempfile
from typing import Iterator

SORT_RUN = 100_000  # items sorted in memory before a run is written to a temporary file
_NOTHING = object()


class ExternalSorter:
    """Add comparable items (tuples, bytes), then read them back in order; memory holds one run at most."""

    def __init__(self, folder: str | None, run: int = SORT_RUN, *, distinct: bool = False) -> None:
        self._folder = folder
        self._run = run
        self._distinct = distinct  # give equal items once
        self._items: list[tuple] = []
        self._runs: list = []

    def add(self, item: tuple) -> None:
        self._items.append(item)
        if len(self._items) >= self._run:
            self._spill()

    def extend(self, items) -> None:
        self._items.extend(items)
        if len(self._items) >= self._run:
            self._spill()

    def _sort(self) -> None:
        if self._distinct:
            self._items = sorted(set(self._items))  # hashing drops duplicates in C, before the sort
        else:
            self._items.sort()

    def _spill(self) -> None:
        self._sort()
        run = tempfile.TemporaryFile(dir=self._folder)
        for item in self._items:
            pickle.dump(item, run, protocol=pickle.HIGHEST_PROTOCOL)
        run.seek(0)
        self._runs.append(run)
        self._items = []

    @staticmethod
    def _read(run) -> Iterator[tuple]:
        while True:
            try:
                yield pickle.load(run)
            except EOFError:
                return

    def sorted(self) -> Iterator:
        self._sort()
        if not self._runs:
            yield from self._items
            return
        merged = heapq.merge(self._items, *(self._read(r) for r in self._runs))
        if not self._distinct:
            yield from merged
            return
        previous = _NOTHING
        for item in merged:  # equal items of different runs meet here
            if item != previous:
                previous = item
                yield item

    def close(self) -> None:
        for run in self._runs:
            run.close()
        self._runs = []

    def __enter__(self) -> ExternalSorter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
