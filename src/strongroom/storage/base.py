"""The narrow storage protocol every repository backend implements.

A backend stores opaque, immutable-in-practice objects under ``/``-separated relative
names such as ``config``, ``keys/<hex>``, ``data/ab/<64 hex>``, ``index/<hex>``,
``snapshots/<hex>`` and ``locks/<hex>``. It knows nothing about encryption or formats.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from types import TracebackType

#: Infix marking a backend's temporary (in-flight) object; never a valid name component.
TEMP_INFIX = ".tmp-"

#: Top-level folders of a repository (``data`` also has the 256 subfolders ``00``..``ff``).
FOLDERS = ("keys", "data", "index", "snapshots", "locks")

#: The object whose presence means "a repository is here".
CONFIG = "config"

_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")

# What an interrupted ``init`` may leave besides the folders (it writes the key file, then the
# config last): key files, and the temporaries of a key file or of the config being written.
_INIT_LEFTOVER = re.compile(r"keys/[0-9a-f]{64}(\.tmp-[0-9A-Za-z]+)?|config\.tmp-[0-9A-Za-z]+")

Data = bytes | bytearray | memoryview


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid object name, else raise ValueError.

    Valid: relative, ``/``-separated, every component non-empty, made of
    ``[A-Za-z0-9._-]``, not ``.`` or ``..`` and not containing the temp infix ``.tmp-``.
    A bad name is a programming error, hence ValueError rather than a StorageError.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid object name: {name!r} (empty)")
    for part in name.split("/"):
        if not part or part in (".", "..") or not _COMPONENT.fullmatch(part):
            raise ValueError(f"invalid object name: {name!r}")
        if TEMP_INFIX in part:
            raise ValueError(f"invalid object name: {name!r} (reserved {TEMP_INFIX!r})")
    return name


def validate_range(offset: int, length: int | None) -> None:
    """Raise ValueError for a negative offset or length."""
    if offset < 0:
        raise ValueError(f"negative offset: {offset}")
    if length is not None and length < 0:
        raise ValueError(f"negative length: {length}")


def is_init_leftover(name: str) -> bool:
    """Whether a ``/``-separated name (temporaries included) is something only an interrupted
    ``init`` leaves in a location that has no ``config``: a key file or a temporary of one, or a
    temporary of the config. Such a location is taken over by the next ``create``."""
    return _INIT_LEFTOVER.fullmatch(name) is not None


def data_folders() -> list[str]:
    """The 256 two-hex-digit subfolders of ``data``: ``data/00`` .. ``data/ff``."""
    return [f"data/{i:02x}" for i in range(256)]


class Storage(abc.ABC):
    """A repository location holding named objects (see the module docstring)."""

    url: str

    @abc.abstractmethod
    def create(self) -> None:
        """Create an empty repository location, or take over what an interrupted ``init`` left.

        A location without ``config`` that holds nothing but the layout's empty folders (some or
        all of them) and init leftovers (:func:`is_init_leftover`) is reused: the leftovers are
        removed and the missing folders made, so an ``init`` killed before it stored the config
        can simply be run again. Raise RepositoryExists if the location holds a ``config`` object
        or anything else (a file of its own, a pack, a snapshot, an unknown folder).
        """

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether a repository is here, i.e. its ``config`` object exists.

        Note: right after :meth:`create` this is still False until ``config`` is stored.
        """

    @abc.abstractmethod
    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object, or ``length`` bytes from ``offset`` (None = to the end).

        A range reaching past the end is a short read: it returns only the bytes that
        exist (``b""`` if ``offset`` is at or past the end). Raise ObjectNotFound if missing.
        """

    @abc.abstractmethod
    def store(self, name: str, data: Data) -> None:
        """Store ``data`` under ``name`` atomically; readers never see a partial object.

        Overwriting an existing object is allowed (in practice with the same content).
        """

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; raise ObjectNotFound if missing."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Yield ``(name, size)`` for every object under the folder ``prefix``, recursively.

        Streams (no full listing in memory for file backends); order is unspecified;
        temporary objects are never yielded.
        """

    @abc.abstractmethod
    def stat(self, name: str) -> int:
        """Return the object's size in bytes; raise ObjectNotFound if missing."""

    def sweep_temporaries(self, older_than_s: float) -> int:
        """Remove temporary objects left by writers that died mid-store, if they are older than
        ``older_than_s`` seconds; return how many were removed. Backends whose stores are atomic
        on the server side (memory, S3) have none, so the default does nothing."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default does nothing."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
