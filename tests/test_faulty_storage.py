"""The fault-injecting wrapper itself: it must fail exactly where asked, and crash for good."""

import pytest

from strongroom.errors import StorageError
from strongroom.storage.faulty import FaultyStorage, SimulatedCrash
from strongroom.storage.memory import MemoryStorage


def test_error_mode_fails_only_the_nth_matching_call():
    inner = MemoryStorage()
    s = FaultyStorage(inner, op="store", at=2, mode="error", match="data/")
    s.store("index/a", b"1")  # not counted: another prefix
    s.store("data/00/a", b"1")
    with pytest.raises(StorageError):
        s.store("data/00/b", b"2")
    s.store("data/00/c", b"3")
    assert sorted(n for n, _ in inner.list("data")) == ["data/00/a", "data/00/c"]


@pytest.mark.parametrize("after", [False, True])
def test_crash_mode_stops_everything(after):
    inner = MemoryStorage()
    s = FaultyStorage(inner, op="delete", at=1, mode="crash", after=after)
    inner.store("locks/x", b"1")
    with pytest.raises(SimulatedCrash):
        s.delete("locks/x")
    assert (sorted(n for n, _ in inner.list("locks")) == []) is after
    for call in (lambda: s.load("locks/x"), lambda: s.store("keys/k", b""), lambda: list(s.list("data"))):
        with pytest.raises(SimulatedCrash):
            call()
    assert not isinstance(SimulatedCrash("x"), Exception)
