"""A local cache in front of a remote backend (S3), so that opening a repository and listing
snapshots does not download every snapshot, index file and key each run.

Cached are whole objects whose name is the BLAKE3 hash of their stored bytes (``snapshots/``,
``index/``, ``keys/``), kept exactly as stored (still encrypted), and verified on every use: a
cached file whose hash no longer matches its name is dropped and fetched again. Tree blobs
(ranges of immutable packs, asked for by Repository.load_tree) are cached too, with a checksum. Only loads of
such objects are served from the cache; listing, stat, store and delete always go to the backend,
so objects removed there (by prune or forget) are never resurrected: nobody asks for them any more.
Files of objects the backend no longer lists are removed by :meth:`CachedStorage.forget_missing`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterator

import blake3

from strongroom.storage.base import Data, Storage, validate_name

#: Folders holding content-named objects, which can be cached forever.
CACHED_FOLDERS = ("snapshots", "index", "keys")
_CONTENT_NAME = re.compile(r"(snapshots|index|keys)/([0-9a-f]{64})")


def cache_folder(cache_root: str, url: str) -> str:
    """Per repository location: named by a hash of the URL (the repository id is not known yet)."""
    return os.path.join(cache_root, "objects", hashlib.sha256(url.encode()).hexdigest()[:32])


class CachedStorage(Storage):
    """Forwards everything to ``backend``; whole loads of content-named objects are cached."""

    def __init__(self, backend: Storage, folder: str) -> None:
        self.backend = backend
        self.url = backend.url
        self.folder = folder
        self.hits = 0
        self.misses = 0

    @property
    def parallel_uploads(self) -> int:
        return int(getattr(self.backend, "parallel_uploads", 2))

    def _path(self, name: str) -> str | None:
        match = _CONTENT_NAME.fullmatch(name)
        return None if match is None else os.path.join(self.folder, match.group(1), match.group(2))

    def _read(self, path: str, digest: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if blake3.blake3(data).hexdigest() != digest:  # damaged in the cache: fetch it again
            self._remove(path)
            return None
        return data

    def _write(self, path: str, data: Data) -> None:
        """Best effort: a cache that cannot be written only costs downloads."""
        tmp = f"{path}.tmp-{secrets.token_hex(6)}"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            self._remove(tmp)

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    # -- protocol ---------------------------------------------------------------------------

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(validate_name(name))
        if path is None or offset or length is not None:
            return self.backend.load(name, offset, length)
        digest = os.path.basename(path)
        data = self._read(path, digest)
        if data is not None:
            self.hits += 1
            return data
        self.misses += 1
        data = self.backend.load(name)
        if blake3.blake3(data).hexdigest() == digest:  # never cache what the repository will reject
            self._write(path, data)
        return data

    def load_cached_range(self, name: str, offset: int, length: int) -> bytes:
        """A range of an immutable pack (a tree blob), kept as ``ranges/<pack>-<offset>-<length>``
        with its BLAKE3 in front; the repository also authenticates the blob it holds."""
        validate_name(name)
        pack = name.rsplit("/", 1)[1]
        path = os.path.join(self.folder, "ranges", pack[:2], f"{pack}-{offset}-{length}")
        try:
            with open(path, "rb") as f:
                stored = f.read()
            if blake3.blake3(stored[32:]).digest() == stored[:32]:
                self.hits += 1
                return stored[32:]
            self._remove(path)
        except OSError:
            pass
        self.misses += 1
        data = self.backend.load(name, offset, length)
        if len(data) == length:
            self._write(path, blake3.blake3(data).digest() + data)
        return data

    def store(self, name: str, data: Data) -> None:
        self.backend.store(name, data)
        path = self._path(name)
        if path is not None and blake3.blake3(data).hexdigest() == os.path.basename(path):
            self._write(path, data)  # written here: no need to download it next time

    def delete(self, name: str) -> None:
        path = self._path(validate_name(name))
        if path is not None:
            self._remove(path)
        self.backend.delete(name)

    def create(self) -> None:
        self.backend.create()

    def exists(self) -> bool:
        return self.backend.exists()

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        return self.backend.list(prefix)

    def stat(self, name: str) -> int:
        return self.backend.stat(name)

    def forget_missing(self) -> int:
        """Remove cached files of objects the backend no longer has; return how many."""
        removed = 0
        for folder in CACHED_FOLDERS:
            local = os.path.join(self.folder, folder)
            try:
                cached = set(os.listdir(local))
            except OSError:
                continue
            cached -= {name.rsplit("/", 1)[1] for name, _ in self.backend.list(folder)}
            for entry in cached:
                self._remove(os.path.join(local, entry))
                removed += 1
        return removed

    def sweep_temporaries(self, older_than_s: float) -> int:
        return self.backend.sweep_temporaries(older_than_s)

    def close(self) -> None:
        self.backend.close()
