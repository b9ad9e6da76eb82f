"""strongroom.forked: a forked child whose result file counts only if it exits 0, which runs none
of the parent's clean-up, ignores the stops the parent handles, and never outlives the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from strongroom.forked import Forked

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.exists("/proc/self/stat"),
                                reason="needs fork and /proc")


def test_the_child_writes_its_result_and_exits_0(tmp_path):
    seen = {"parent": "state"}  # the child sees what the parent had, without pickling

    def work(out):
        out.write(f"{os.getpid()} {seen['parent']}".encode())

    child = Forked.start(work, str(tmp_path / "out"))
    assert child is not None
    assert child.wait()
    pid, state = (tmp_path / "out").read_text().split()
    assert int(pid) == child.pid != os.getpid() and state == "state"


@pytest.mark.parametrize("failure", ["exception", "KeyboardInterrupt", "SystemExit(0)", "SIGKILL"])
def test_a_failed_child_runs_none_of_the_parents_clean_up(tmp_path, failure):
    log = tmp_path / "log"

    def work(out):
        out.write(b"half")
        if failure == "exception":
            raise RuntimeError("bug")
        if failure == "KeyboardInterrupt":
            raise KeyboardInterrupt
        if failure == "SystemExit(0)":
            sys.exit(0)
        os.kill(os.getpid(), signal.SIGKILL)

    try:
        child = Forked.start(work, str(tmp_path / "out"))
        assert child is not None
        assert not child.wait()  # even sys.exit(0) is a failure: the work did not finish
    finally:
        with open(log, "a") as f:  # the parent's clean-up: the child must not run it too
            f.write(f"{os.getpid()}\n")
    assert log.read_text() == f"{os.getpid()}\n"


def test_stop_ends_a_running_child_and_reaps_it(tmp_path):
    child = Forked.start(lambda out: time.sleep(60), str(tmp_path / "out"))
    assert child is not None
    started = time.monotonic()
    child.stop()
    assert time.monotonic() - started < 10
    assert not child.wait()
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped: no zombie left
    child.stop()  # again: nothing to do


def test_the_child_ignores_ctrl_c_which_is_the_parents_to_handle(tmp_path):
    go = tmp_path / "go"

    def work(out):
        while not go.exists():
            time.sleep(0.01)
        out.write(b"done")

    child = Forked.start(work, str(tmp_path / "out"))
    assert child is not None
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGINT)
    os.kill(child.pid, signal.SIGTERM)
    go.write_text("")
    assert child.wait()
    assert (tmp_path / "out").read_bytes() == b"done"


def test_the_child_dies_with_its_parent(tmp_path):
    """A parent killed outright (no chance to stop its child) takes the child with it."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.join(os.path.dirname(__file__), '..', 'src')!r})
        from strongroom.forked import Forked
        child = Forked.start(lambda out: time.sleep(60), {str(tmp_path / 'out')!r})
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert _running(child_pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _running(child_pid):
        if time.monotonic() > deadline:
            pytest.fail("the child outlived its parent")
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for whoever adopted it to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
