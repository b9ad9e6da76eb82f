"""The catalogue's external sort: sorted runs in temporary files, merged; equal items once when
asked (a part records a message given twice once, spec §23.1)."""

from __future__ import annotations

import random

import pytest

from strongroom.messages.external_sort import ExternalSorter


@pytest.mark.parametrize("run", [3, 10, 1000])  # many spilled runs, a few, none
@pytest.mark.parametrize("distinct", [False, True])
def test_sorted_items_whatever_the_runs(tmp_path, run, distinct):
    rnd = random.Random(run)
    items = [bytes([rnd.randrange(8), rnd.randrange(4)]) for _ in range(200)]  # many repeats, across runs
    with ExternalSorter(str(tmp_path), run=run, distinct=distinct) as sorter:
        for i, item in enumerate(items):
            sorter.add(item) if i % 2 else sorter.extend([item])
        got = list(sorter.sorted())
    assert got == (sorted(set(items)) if distinct else sorted(items))
    assert len(got) < len(items) if distinct else len(got) == 200
