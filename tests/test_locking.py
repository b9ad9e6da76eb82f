"""Lock acquisition interrupted at its worst moment leaves no lock behind."""

from __future__ import annotations

import pytest

from strongroom.locking import Lock


def test_interrupt_after_the_lock_file_is_written_removes_it(repo, monkeypatch):
    calls = []
    real = Lock._conflicts

    def interrupted_on_second_look(self):
        calls.append(1)
        if len(calls) == 2:  # the lock file is stored; Ctrl-C / SIGTERM lands now
            assert list(repo.storage.list("locks")) != []
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Lock, "_conflicts", interrupted_on_second_look)
    with pytest.raises(KeyboardInterrupt):
        repo.lock(exclusive=True)
    assert list(repo.storage.list("locks")) == []


def test_lock_is_released_and_taken_again(repo):
    with repo.lock(exclusive=True) as lock:
        assert [name for name, _ in repo.storage.list("locks")] == [lock.name]
    assert list(repo.storage.list("locks")) == []
    with repo.lock(exclusive=False):
        assert len(list(repo.storage.list("locks"))) == 1
