"""An in-memory, dict-backed backend with the same semantics as the others (for tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from strongroom.errors import ObjectNotFound, RepositoryExists
from strongroom.storage.base import CONFIG, Data, Storage, is_init_leftover, validate_name, validate_range


class MemoryStorage(Storage):
    """Objects in a dict guarded by a lock; ``store`` swaps whole values, so it is atomic.

    Unlike LocalStorage, operations work before :meth:`create` (there is no location
    to be missing); ``create`` only refuses a store holding objects other than init leftovers.
    """

    def __init__(self, url: str = "memory:") -> None:
        self.url = url
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def create(self) -> None:
        with self._lock:
            if CONFIG in self._objects:
                raise RepositoryExists(f"a repository already exists at {self.url}")
            foreign = next((name for name in self._objects if not is_init_leftover(name)), None)
            if foreign is not None:
                raise RepositoryExists(f"{self.url} is not empty (it holds {foreign!r} and no config)")
            self._objects.clear()  # what an interrupted init left

    def exists(self) -> bool:
        with self._lock:
            return CONFIG in self._objects

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_name(name)
        validate_range(offset, length)
        with self._lock:
            data = self._get(name)
        end = None if length is None else offset + length
        return data[offset:end]

    def store(self, name: str, data: Data) -> None:
        validate_name(name)
        value = bytes(data)
        with self._lock:
            self._objects[name] = value

    def delete(self, name: str) -> None:
        validate_name(name)
        with self._lock:
            if self._objects.pop(name, None) is None:
                raise self._not_found(name)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        validate_name(prefix)
        start = prefix + "/"
        with self._lock:
            found = [(n, len(d)) for n, d in self._objects.items() if n.startswith(start)]
        return iter(found)

    def stat(self, name: str) -> int:
        validate_name(name)
        with self._lock:
            return len(self._get(name))

    def _get(self, name: str) -> bytes:
        try:
            return self._objects[name]
        except KeyError:
            raise self._not_found(name) from None

    def _not_found(self, name: str) -> ObjectNotFound:
        return ObjectNotFound(f"object {name} not found in {self.url}")
