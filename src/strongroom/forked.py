"""Pure computation on the second core: a forked copy of this process that writes one file.

Parsing chat exports for the catalogue is Python code that holds the GIL, so threads cannot
share it out; a forked child can, and inherits everything already set up (readers with their
context, keys) without pickling any of it. The child is only trusted with computation: it must
not touch what the parent's other threads may hold (the blob writer, LMDB environments, the
repository's storage), only read local files, compute, and write its result file. Its result
counts only if it exits with status 0; otherwise the caller does the same work itself, so a
child that fails (a full disk, a signal, a bug) costs time, never a wrong result.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import warnings
from typing import BinaryIO, Callable

_STOPS = (signal.SIGINT, signal.SIGTERM)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Forked:
    """A child process running ``work(out)`` with ``out`` open for writing on ``path``."""

    def __init__(self, pid: int, path: str) -> None:
        self.pid = pid
        self.path = path
        self._status: int | None = None

    @classmethod
    def start(cls, work: Callable[[BinaryIO], None], path: str, *, nice: int = 0) -> Forked | None:
        """The started child, or None where this platform or the system cannot fork now.
        ``nice``: how much lower the child's scheduling priority is than this process's."""
        if not hasattr(os, "fork"):
            return None
        parent = os.getpid()
        # Ctrl-C and SIGTERM are held over the fork: a stop that arrives in between is the
        # parent's to handle (it stops the child), and the child starts with them ignored.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns that forking a threaded process may deadlock the child if
                # it takes a lock another thread held; this child takes none of those (above).
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            return None
        if pid == 0:
            _child(work, path, parent, held, nice)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return cls(pid, path)

    def running(self) -> bool:
        """Whether the child is still at work (reaped, without waiting, if it has ended)."""
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return True
            self._status = status
        return False

    def wait(self) -> bool:
        """Wait for the child; whether it finished its work (exit status 0)."""
        if self._status is None:
            _, status = os.waitpid(self.pid, 0)
            self._status = status
        return os.waitstatus_to_exitcode(self._status) == 0

    def stop(self) -> None:
        """End the child now if it still runs, and reap it."""
        if self._status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _, self._status = os.waitpid(self.pid, 0)


def _child(work: Callable[[BinaryIO], None], path: str, parent: int, held, nice: int) -> None:
    code = 1
    try:
        if nice:
            os.nice(nice)
        for signum in _STOPS:
            signal.signal(signum, signal.SIG_IGN)  # the parent stops the child when it stops
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        _end_with_parent(parent)
        # what the parent had is never garbage here: left out of collections, whose passes over
        # every object would copy each of the parent's pages into this process
        gc.freeze()
        with open(path, "wb") as out:
            work(out)
        code = 0
    except BaseException:  # noqa: BLE001 - the parent redoes the work; nothing of the parent's may run here
        pass
    finally:
        # os._exit: none of the parent's finally blocks, atexit handlers or buffered output run
        # here (its lock release, its writer's flush, its half-printed lines)
        os._exit(code)


def _end_with_parent(parent: int) -> None:
    """Have the kernel kill this child if the parent dies (Linux), so it never outlives it."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
