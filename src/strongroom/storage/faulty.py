"""A storage wrapper that fails or "crashes" at a chosen operation, for crash-safety tests.

``FaultyStorage(inner, op="store", at=3, mode="crash")`` lets the first two ``store`` calls
through and, at the third:

- ``mode="error"``: raises StorageError for that call only (a transient failure);
- ``mode="crash"``: raises SimulatedCrash, and from then on every call raises it too, as if
  the machine had stopped: nothing more reaches the inner storage.

``after=True`` performs the operation before failing (the write landed, the process died before
it learned so). ``match`` limits counting to names starting with a prefix (e.g. ``"data/"``).
SimulatedCrash derives from BaseException so that no ``except Exception`` in the code under test
can swallow it, just as nothing survives a real crash.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from strongroom.errors import StorageError
from strongroom.storage.base import Data, Storage

OPERATIONS = ("load", "store", "delete", "list", "stat")


class SimulatedCrash(BaseException):
    pass


class FaultyStorage(Storage):
    def __init__(self, inner: Storage, *, op: str = "store", at: int = 1, mode: str = "crash",
                 after: bool = False, match: str = "") -> None:
        if op not in OPERATIONS or mode not in ("crash", "error") or at < 1:
            raise ValueError("bad fault specification")
        self.inner = inner
        self.url = inner.url
        self.op, self.at, self.mode, self.after, self.match = op, at, mode, after, match
        self.count = 0
        self.crashed = False
        self.fired = False
        self._lock = threading.Lock()

    def _before(self, op: str, name: str) -> bool:
        """Count this call; return True if it is the one that fails."""
        with self._lock:
            if self.crashed:
                raise SimulatedCrash(f"storage is down (crashed earlier), {op} {name}")
            if op != self.op or not name.startswith(self.match) or self.fired:
                return False
            self.count += 1
            if self.count < self.at:
                return False
            self.fired = True
            if self.mode == "crash":
                self.crashed = True
            return True

    def _fail(self, op: str, name: str) -> None:
        if self.mode == "crash":
            raise SimulatedCrash(f"simulated crash at {op} #{self.at} ({name})")
        raise StorageError(f"simulated failure at {op} #{self.at} ({name})")

    def _call(self, op: str, name: str, fn):
        if self._before(op, name):
            if self.after:
                fn()
            self._fail(op, name)
        return fn()

    def create(self) -> None:
        self.inner.create()

    def exists(self) -> bool:
        if self.crashed:
            raise SimulatedCrash("storage is down")
        return self.inner.exists()

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call("load", name, lambda: self.inner.load(name, offset, length))

    def store(self, name: str, data: Data) -> None:
        self._call("store", name, lambda: self.inner.store(name, data))

    def delete(self, name: str) -> None:
        self._call("delete", name, lambda: self.inner.delete(name))

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        return self._call("list", prefix, lambda: iter(list(self.inner.list(prefix))))

    def stat(self, name: str) -> int:
        return self._call("stat", name, lambda: self.inner.stat(name))

    def sweep_temporaries(self, older_than_s: float) -> int:
        return self.inner.sweep_temporaries(older_than_s)

    def close(self) -> None:
        self.inner.close()
