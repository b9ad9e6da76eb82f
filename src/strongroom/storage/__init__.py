"""Storage backends and ``open_storage(url)``, which picks one by URL scheme.

Supported URLs: ``memory:`` (a fresh store), ``memory:<name>`` (a process-global store
shared by every open of that name), ``file:<path>``, ``file://<path>``, ``local:<path>``
a plain path, and ``s3:https://host:port/bucket/prefix`` or ``s3://bucket/prefix`` (see
storage/s3.py). Further backends register a factory in ``SCHEMES``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from strongroom.errors import UsageError
from strongroom.storage.base import Storage, validate_name
from strongroom.storage.local import LocalStorage
from strongroom.storage.memory import MemoryStorage

__all__ = ["LocalStorage", "MemoryStorage", "SCHEMES", "Storage", "open_storage", "validate_name"]

_named_memory: dict[str, MemoryStorage] = {}
_named_memory_lock = threading.Lock()


def _open_memory(rest: str) -> Storage:
    if not rest:
        return MemoryStorage()
    with _named_memory_lock:
        if rest not in _named_memory:
            _named_memory[rest] = MemoryStorage(f"memory:{rest}")
        return _named_memory[rest]


def _open_local(rest: str) -> Storage:
    if rest.startswith("//"):  # file:///abs/path
        rest = rest[2:]
    if not rest:
        raise UsageError("repository URL has an empty path")
    return LocalStorage(rest)


def _open_s3(rest: str) -> Storage:
    from strongroom.storage.s3 import open_s3  # boto3 is imported only for S3 repositories

    return open_s3(rest)


#: Registration point: URL scheme -> factory taking the text after ``scheme:``.
SCHEMES: dict[str, Callable[[str], Storage]] = {
    "memory": _open_memory,
    "file": _open_local,
    "local": _open_local,
    "s3": _open_s3,
}

# Two or more characters, so a Windows drive ("C:\\repo") stays a plain path.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(.*)", re.DOTALL)


def open_storage(url: str) -> Storage:
    """Return the backend for ``url``; raise UsageError for an empty or unsupported URL."""
    if not url:
        raise UsageError("empty repository URL")
    match = _SCHEME.fullmatch(url)
    if match is None:
        return LocalStorage(url)
    scheme, rest = match.group(1).lower(), match.group(2)
    factory = SCHEMES.get(scheme)
    if factory is None:
        supported = ", ".join(sorted(SCHEMES))
        raise UsageError(
            f"unsupported repository URL scheme: {scheme} (supported: {supported}; "
            f"use local:<path> for a path containing ':')"
        )
    return factory(rest)
