"""Per-repository zstd dictionaries for small text blobs (spec: "Compression dictionaries").

Small text chunks (a few KiB of chat JSON) compress poorly alone: each one relearns the same
keys, user ids and phrases. A dictionary trained on the repository's own text chunks carries
that shared context, so a chunk compresses against it.

A dictionary is a sealed object ``dicts/<id as 8 hex digits>`` under the shared-object key
(magic SRDW), so write-only keys can read it to compress. Its id is derived from its content with
the chunk-id key (``dictionary_id``), so the name is deterministic, two writers that train the
same dictionary write the same name, and a reader verifies that the object it loaded is the one
the blob names. A dictionary is stored before any pack that uses it, and nothing deletes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import zstandard

from strongroom.crypto import sealed
from strongroom.errors import IntegrityError, ObjectNotFound, UnsupportedFormat

FOLDER = "dicts"
DEFAULT_SIZE = 110 * 1024  # zstd's own default dictionary size
MAX_SIZE = 1024 * 1024  # refused when reading: a dictionary is held in memory
MAX_SAMPLE_BYTES = 4 * 1024 * 1024  # what training reads, at most
MIN_SAMPLE_BYTES = 256 * 1024  # less gives no useful dictionary
MAX_SAMPLE_CHUNK = 64 * 1024  # longer chunks are not typical of what a dictionary helps
CACHE_SIZE = 8
_ID_DOMAIN = b"strongroom 2026-11-22 v1 compression dictionary id\0"


def dictionary_id(master, content: bytes) -> int:
    """The dictionary's id: the first 4 bytes (LE) of its keyed hash, never 0 (0 means none)."""
    value = int.from_bytes(master.blob_id(_ID_DOMAIN + content)[:4], "little")
    return value or 1


def dictionary_path(dict_id: int) -> str:
    return f"{FOLDER}/{dict_id:08x}"


def parse_name(name: str) -> int | None:
    base = name.rsplit("/", 1)[-1]
    if len(base) != 8 or any(c not in "0123456789abcdef" for c in base):
        return None
    value = int(base, 16)
    return value or None


def train(samples: list[bytes], size: int) -> bytes | None:
    """Train a dictionary deterministically (the same samples give the same bytes); None when
    the samples are too few or zstd cannot train on them."""
    if sum(len(s) for s in samples) < MIN_SAMPLE_BYTES or len(samples) < 16:
        return None
    try:
        trained = zstandard.train_dictionary(size, samples, threads=0)
    except zstandard.ZstdError:
        return None
    return trained.as_bytes()


class Sampler:
    """Keeps the first text chunks of a backup, up to MAX_SAMPLE_BYTES, for training."""

    def __init__(self, limit: int = MAX_SAMPLE_BYTES) -> None:
        self.limit = limit
        self.samples: list[bytes] = []
        self.size = 0

    def offer(self, data: bytes) -> bool:
        """Keep ``data`` if it fits; return whether the sample is now full."""
        if len(data) <= MAX_SAMPLE_CHUNK and self.size + len(data) <= self.limit:
            self.samples.append(data)
            self.size += len(data)
        return self.size + 1024 > self.limit


class Dictionaries:
    """Loads, verifies and caches (bounded) a repository's dictionaries; stores new ones."""

    def __init__(self, storage, master) -> None:
        self._storage = storage
        self._master = master
        self._cache: OrderedDict[int, zstandard.ZstdCompressionDict] = OrderedDict()
        self._lock = threading.Lock()
        # Failures are remembered (bounded): a damaged dictionary is reported for each of its blobs
        # without reading it again for each one.
        self._failed: OrderedDict[int, str] = OrderedDict()

    def ids(self) -> list[int]:
        found = (parse_name(name) for name, _ in self._storage.list(FOLDER))
        return sorted(i for i in found if i)

    def get(self, dict_id: int) -> zstandard.ZstdCompressionDict:
        with self._lock:
            cached = self._cache.get(dict_id)
            if cached is not None:
                self._cache.move_to_end(dict_id)
                return cached
            failed = self._failed.get(dict_id)
        if failed is not None:
            raise IntegrityError(failed)
        try:
            return self._load(dict_id)
        except IntegrityError as e:
            with self._lock:
                self._failed[dict_id] = str(e)
                while len(self._failed) > 64:
                    self._failed.popitem(last=False)
            raise

    def _load(self, dict_id: int) -> zstandard.ZstdCompressionDict:
        what = f"dictionary {dict_id:08x}"
        try:
            data = self._storage.load(dictionary_path(dict_id))
        except ObjectNotFound:
            raise IntegrityError(f"{what} is missing from the repository") from None
        try:
            content = sealed.unseal(self._master, sealed.MAGIC_DICTIONARY, data, what, max_size=MAX_SIZE)
        except UnsupportedFormat as e:  # its blobs are unreadable here: reported like damage
            raise IntegrityError(str(e)) from None
        if dictionary_id(self._master, content) != dict_id:
            raise IntegrityError(f"{what}: content does not match its id")
        zdict = zstandard.ZstdCompressionDict(content)
        with self._lock:
            self._cache[dict_id] = zdict
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return zdict

    def save(self, content: bytes) -> int:
        """Store a dictionary (idempotent for the same content); return its id, or 0 if another
        dictionary already holds that id (a 32-bit collision: then do not use this one)."""
        dict_id = dictionary_id(self._master, content)
        try:
            existing = self._load(dict_id)
        except IntegrityError:
            existing = None  # absent (or damaged: replacing it with a verified copy is safe)
        if existing is not None:
            return dict_id if existing.as_bytes() == content else 0
        self._storage.store(dictionary_path(dict_id), sealed.seal(self._master, sealed.MAGIC_DICTIONARY, content))
        with self._lock:
            self._failed.pop(dict_id, None)
        return dict_id
