"""Lock acquisition interrupted at its worst moment leaves no lock behind."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from strongroom.locking import Lock

from conftest import PASSWORD


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


def test_interrupt_while_the_refresh_thread_starts_removes_the_lock(repo, monkeypatch):
    """Under load starting a thread takes a while: a SIGTERM landing then left the lock behind."""
    started = []
    real_start = threading.Thread.start

    def start_then_interrupt(thread):
        real_start(thread)
        started.append(thread)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        repo.lock(exclusive=False)
    monkeypatch.undo()
    assert list(repo.storage.list("locks")) == []
    [thread] = started
    thread.join(timeout=10)
    assert not thread.is_alive(), "the refresh thread of an abandoned lock keeps running"


def test_interrupt_while_releasing_still_removes_the_lock(repo, monkeypatch):
    lock = repo.lock(exclusive=True)

    def interrupted_join(timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(lock._thread, "join", interrupted_join)
    with pytest.raises(KeyboardInterrupt):
        lock.release()
    assert list(repo.storage.list("locks")) == []


def test_a_lock_never_released_is_removed_when_the_process_exits(repo, repo_path):
    """An interrupt between ``repo.lock()`` returning and its ``with`` block starting skips the
    release: the exit hook removes the lock instead of leaving it to go stale."""
    script = ("import sys\n"
              "from strongroom.repository import Repository\n"
              "from strongroom.storage.local import LocalStorage\n"
              f"repo = Repository.open(LocalStorage({str(repo_path)!r}), {PASSWORD!r})\n"
              "lock = repo.lock(exclusive=True)\n"
              "print(lock.name, flush=True)\n"
              "sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (3, "")
    assert proc.stdout.startswith("locks/")
    assert list(repo.storage.list("locks")) == []
