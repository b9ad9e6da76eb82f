"""The local LMDB index cache: blob id → (pack, entry), and pack → (size, envelope).

The only module that imports lmdb. It is a cache of the repository's index files, kept per
repository under the user's cache directory; it can always be rebuilt from ``index/``. Lookups
touch LMDB pages, not Python objects, so process memory does not grow with the chunk count.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator

import lmdb

from strongroom.errors import StrongroomError
from strongroom.indexfile import WIDE_ENTRY, PackRecord
from strongroom.pack import BlobEntry

# pack, type, compression, dictionary, offset, length, raw length, member offset, group length
_LOCATION = struct.Struct("<32s B B I Q I I I I")
_PACKINFO = struct.Struct("<Q")
_ENTRY = WIDE_ENTRY  # a blob entry with its group fields (indexfile.decode_index_raw's records)
TXN_ENTRIES = 4096  # blob entries per cache write transaction (bounds its dirty pages)
# 2: adds the per-pack entry table; 3: one record per pack in it; 4: entries carry the group fields
# (spec "Grouped blobs"): a cache of an older schema is dropped and rebuilt, never misread.
SCHEMA = b"strongroom index cache 4"


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack: str  # hex name
    entry: BlobEntry


# LMDB allows one Environment per file per process: repositories opened twice share it.
_envs: dict[str, list] = {}
_envs_lock = threading.Lock()


def _acquire_env(path: str) -> lmdb.Environment:
    key = os.path.realpath(path)
    with _envs_lock:
        slot = _envs.get(key)
        if slot is None:
            try:
                os.makedirs(key, mode=0o700, exist_ok=True)
                env = lmdb.open(key, map_size=1 << 40, max_dbs=8, metasync=False, readahead=False)
            except (OSError, lmdb.Error) as e:
                reason = "it is not a folder" if isinstance(e, FileExistsError) else getattr(e, "strerror", None) or e
                raise StrongroomError(f"cannot open the local cache {key}: {reason} (it holds nothing the "
                                      "repository does not: remove it, and it is rebuilt)") from None
            slot = _envs[key] = [env, 0]
        slot[1] += 1
        return slot[0]


def _release_env(env: lmdb.Environment) -> None:
    with _envs_lock:
        for key, slot in list(_envs.items()):
            if slot[0] is env:
                slot[1] -= 1
                if slot[1] == 0:
                    del _envs[key]
                    env.close()
                return


class IndexCache:
    def __init__(self, path: str | os.PathLike) -> None:
        self._env = _acquire_env(os.fspath(path))
        self._blobs = self._env.open_db(b"blobs")
        self._packs = self._env.open_db(b"packs")
        self._files = self._env.open_db(b"indexfiles")
        self._meta = self._env.open_db(b"meta")
        self._pack_entries = self._env.open_db(b"packentries")  # pack -> its entries, packed, by offset
        self._missing = self._env.open_db(b"missingpacks")  # indexed packs gone from storage
        with self._env.begin(write=True) as txn:
            if txn.get(b"schema", db=self._meta) != SCHEMA:
                self._drop(txn)
                txn.put(b"schema", SCHEMA, db=self._meta)

    def close(self) -> None:
        if self._env is not None:
            _release_env(self._env)
            self._env = None

    def _drop(self, txn: lmdb.Transaction) -> None:
        for db in (self._blobs, self._packs, self._files, self._pack_entries):
            txn.drop(db, delete=False)

    def clear(self) -> None:
        """Forget every index file (the missing-pack list stays: it comes from storage)."""
        with self._env.begin(write=True) as txn:
            self._drop(txn)

    def missing_packs(self) -> set[str]:
        with self._env.begin() as txn:
            return {bytes(k).hex() for k in txn.cursor(db=self._missing).iternext(values=False)}

    def set_missing_packs(self, names: Iterable[str]) -> None:
        """Packs that index files list but storage no longer has: their entries are left out of
        the cache (on the next rebuild), so their blobs count as absent and other copies serve."""
        with self._env.begin(write=True) as txn:
            txn.drop(self._missing, delete=False)
            for name in names:
                txn.put(bytes.fromhex(name), b"", db=self._missing)

    def known_index_files(self) -> set[str]:
        with self._env.begin() as txn:
            return {bytes(k).decode() for k in txn.cursor(db=self._files).iternext(values=False)}

    def add_index_file(self, name: str, packs: Iterable[PackRecord]) -> None:
        """Record one index file's packs and blobs, then the file's name."""
        self.add_index_file_raw(name, ((bytes.fromhex(p.name), p.size, p.envelope, b"".join(
            _ENTRY.pack(e.id, e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length,
                        e.member_offset, e.group_length)
            for e in p.entries)) for p in packs))

    def add_index_file_raw(self, name: str, packs: Iterable[tuple[bytes, int, bytes, bytes]]) -> None:
        """``add_index_file`` for packs as ``indexfile.decode_index_raw`` gives them (name bytes,
        size, envelope, packed entries): no Python object per blob.

        Committed every TXN_ENTRIES entries or so (after a whole pack): a write transaction keeps
        each page it dirties in memory, and random blob ids dirty a page per insert, so one
        transaction per 100 000-entry index file could hold hundreds of MiB. Re-adding after an
        interruption is harmless (the name, written last, is what marks the file as read)."""
        size = _ENTRY.size
        txn = self._env.begin(write=True)
        try:
            pending = 0
            for pack, pack_size, envelope, block in packs:
                if txn.get(pack, db=self._missing) is not None:
                    continue  # gone from storage: its blobs must not look present
                if pending >= TXN_ENTRIES:
                    txn.commit()
                    txn = self._env.begin(write=True)
                    pending = 0
                pending += len(block) // size
                txn.put(pack, _PACKINFO.pack(pack_size) + envelope, db=self._packs)
                known = txn.get(pack, db=self._pack_entries)
                txn.put(pack, block if known is None else _merge_entries(known, block), db=self._pack_entries)
                # The location value is the pack name and the entry without its id (same layout).
                # An existing location is kept: any complete copy of a blob serves.
                txn.cursor(db=self._blobs).putmulti(
                    ((block[i:i + 32], pack + block[i + 32:i + size]) for i in range(0, len(block), size)),
                    overwrite=False)
            txn.put(name.encode(), b"", db=self._files)
            txn.commit()
        except BaseException:
            txn.abort()
            raise

    def bulk_loader(self) -> BulkLoader:
        """For a rebuild from nothing: clears the cache; see ``BulkLoader``."""
        self.clear()
        return BulkLoader(self)

    def has(self, blob_id: bytes) -> bool:
        with self._env.begin(buffers=True) as txn:
            return txn.get(blob_id, db=self._blobs) is not None

    def has_all(self, blob_ids: Iterable[bytes]) -> bool:
        """Whether every blob is present, in one read transaction."""
        with self._env.begin(buffers=True) as txn:
            get, db = txn.get, self._blobs
            return all(get(i, db=db) is not None for i in blob_ids)

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        return self.lookup_many([blob_id])[0]

    def lookup_many(self, blob_ids: list[bytes]) -> list[BlobLocation | None]:
        """Locations of several blobs, read in one transaction (much cheaper than one each)."""
        out: list[BlobLocation | None] = []
        with self._env.begin() as txn:
            get = txn.get
            for blob_id in blob_ids:
                raw = get(blob_id, db=self._blobs)
                if raw is None:
                    out.append(None)
                    continue
                pack, *fields = _LOCATION.unpack(raw)
                out.append(BlobLocation(pack.hex(), BlobEntry(blob_id, *fields)))
        return out

    def pack_info(self, name: str) -> tuple[int, bytes] | None:
        with self._env.begin() as txn:
            raw = txn.get(bytes.fromhex(name), db=self._packs)
        if raw is None:
            return None
        return _PACKINFO.unpack_from(raw)[0], raw[_PACKINFO.size:]

    def iter_packs(self) -> Iterator[tuple[str, int]]:
        with self._env.begin() as txn:
            for k, v in txn.cursor(db=self._packs):
                yield bytes(k).hex(), _PACKINFO.unpack_from(v)[0]

    def counts(self) -> tuple[int, int]:
        """(blobs, packs) known to the cache."""
        with self._env.begin() as txn:
            return txn.stat(self._blobs)["entries"], txn.stat(self._packs)["entries"]

    def folder(self) -> str:
        """Where the cache lives (scratch tables go next to it, not in a possibly RAM-backed /tmp)."""
        return self._env.path()

    def pack_entries(self, name: str) -> list[BlobEntry]:
        """The entries the index files record for one pack, in offset order (a pack holds at most
        a few thousand blobs, so a list is fine)."""
        with self._env.begin() as txn:
            block = txn.get(bytes.fromhex(name), db=self._pack_entries)
        if block is None:
            return []
        return sorted((BlobEntry(*e) for e in _ENTRY.iter_unpack(block)), key=lambda e: (e.offset, e.member_offset))


class BulkLoader:
    """Fills an empty cache from many index files at once, much faster than one at a time.

    Inserting millions of random ids into a B-tree rewrites a page per insert; instead each index
    file's blob records are sorted and written to a run file next to the cache, and at ``finish``
    the runs are merged and appended to the blob table in id order (LMDB's append mode writes
    each page once). Packs go in directly. The index file names are recorded last, so an
    interrupted load leaves a cache that knows no file and is rebuilt on the next open. Memory:
    one index file's records while sorting, then a read buffer per run."""

    RECORD = 32 + 4 + _LOCATION.size  # id, run number (big-endian: ties go to the earlier file), location
    COMMIT_EVERY = 200_000  # appends per transaction (append mode dirties only the rightmost pages)
    READ_BUFFER = 64 * 1024

    def __init__(self, cache: IndexCache) -> None:
        import tempfile
        self._cache = cache
        self._dir = tempfile.TemporaryDirectory(prefix="strongroom-rebuild-", dir=cache.folder())
        self._runs: list[str] = []
        self._names: list[str] = []

    def add(self, name: str, packs: Iterable[tuple[bytes, int, bytes, bytes]]) -> None:
        cache, size = self._cache, _ENTRY.size
        run = len(self._runs).to_bytes(4, "big")
        records: list[bytes] = []
        with cache._env.begin(write=True) as txn:
            for pack, pack_size, envelope, block in packs:
                if txn.get(pack, db=cache._missing) is not None:
                    continue
                txn.put(pack, _PACKINFO.pack(pack_size) + envelope, db=cache._packs)
                known = txn.get(pack, db=cache._pack_entries)
                txn.put(pack, block if known is None else _merge_entries(known, block), db=cache._pack_entries)
                records += [block[i:i + 32] + run + pack + block[i + 32:i + size] for i in range(0, len(block), size)]
        records.sort()  # by id, then run; the same id twice in one file: either location serves
        path = os.path.join(self._dir.name, f"run{len(self._runs)}")
        with open(path, "wb") as f:
            f.write(b"".join(records))
        self._runs.append(path)
        self._names.append(name)

    def _read_run(self, path: str) -> Iterator[bytes]:
        n = self.RECORD
        with open(path, "rb", buffering=0) as f:
            while block := f.read(self.READ_BUFFER // n * n):
                for i in range(0, len(block), n):
                    yield block[i:i + n]

    def finish(self) -> None:
        import heapq
        cache = self._cache
        merged = heapq.merge(*(self._read_run(p) for p in self._runs))
        last = None
        txn = cache._env.begin(write=True)
        try:
            put = txn.cursor(db=cache._blobs).put
            pending = 0
            for record in merged:
                key = record[:32]
                if key == last:
                    continue  # the same blob in two packs: the first listed wins
                last = key
                if not put(key, record[36:], append=True):
                    # out of order only if another process added blobs meanwhile: insert normally
                    put(key, record[36:], overwrite=False)
                pending += 1
                if pending >= self.COMMIT_EVERY:
                    txn.commit()
                    txn = cache._env.begin(write=True)
                    put = txn.cursor(db=cache._blobs).put
                    pending = 0
            for name in self._names:
                txn.put(name.encode(), b"", db=cache._files)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        finally:
            self.close()

    def close(self) -> None:
        self._dir.cleanup()


def _merge_entries(a: bytes, b: bytes) -> bytes:
    """Two packed entry blocks of one pack (listed by two index files) as one, by offset (and
    place in a group); the first listing of a place wins."""
    by_offset: dict[tuple[int, int], bytes] = {}
    for block in (a, b):
        for i in range(0, len(block), _ENTRY.size):
            record = block[i:i + _ENTRY.size]
            fields = _ENTRY.unpack(record)
            by_offset.setdefault((fields[4], fields[7]), record)
    return b"".join(by_offset[k] for k in sorted(by_offset))


class ScratchSet:
    """A set of byte strings for one operation that may hold millions of them (check, repair).

    Up to ``spill`` members live in a Python set; beyond that they move to a throw-away LMDB
    environment in a temporary folder, so memory stays bounded whatever the repository size."""

    def __init__(self, spill: int = 200_000, folder: str | None = None) -> None:
        self._mem: set[bytes] = set()
        self._spill = spill
        self._folder = folder
        self._env: lmdb.Environment | None = None
        self._tmp = None
        self._disk_count = 0

    def __len__(self) -> int:
        return len(self._mem) + self._disk_count

    def __contains__(self, key: bytes) -> bool:
        if key in self._mem:
            return True
        if self._env is None:
            return False
        with self._env.begin(buffers=True) as txn:
            return txn.get(key) is not None

    def add(self, key: bytes) -> None:
        if key in self._mem or (self._env is not None and key in self):
            return
        self._mem.add(key)
        if len(self._mem) >= self._spill:
            self._flush()

    def _flush(self) -> None:
        if self._env is None:
            import tempfile
            self._tmp = tempfile.TemporaryDirectory(prefix="strongroom-scratch-", dir=self._folder)
            self._env = lmdb.open(self._tmp.name, map_size=1 << 40, sync=False, metasync=False, lock=False,
                                  readahead=False)
        with self._env.begin(write=True) as txn:
            put = txn.cursor().put
            for key in self._mem:
                if put(key, b"", overwrite=False):
                    self._disk_count += 1
        self._mem.clear()

    def __iter__(self) -> Iterator[bytes]:
        yield from list(self._mem)
        if self._env is not None:
            with self._env.begin() as txn:
                for key in txn.cursor().iternext(values=False):
                    yield bytes(key)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._tmp.cleanup()
        self._mem.clear()

    def __enter__(self) -> ScratchSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScratchTable:
    """A temporary on-disk key → value table (for prune's reachable set, stats and diff), so that
    sets of millions of blob ids live in LMDB pages rather than Python objects. Deleted on close.

    Writes are batched into transactions of ``BATCH`` puts; reads see unflushed puts."""

    BATCH = 2_000

    def __init__(self, directory: str | None = None) -> None:
        import shutil
        import tempfile
        self._rmtree = shutil.rmtree
        self.path = tempfile.mkdtemp(prefix="strongroom-scratch-", dir=directory)
        try:
            self._env = lmdb.open(self.path, map_size=1 << 40, subdir=True, sync=False, metasync=False,
                                  writemap=False, readahead=False, lock=False)
        except lmdb.Error as e:
            shutil.rmtree(self.path, ignore_errors=True)
            raise StrongroomError(f"cannot create a scratch table in {self.path}: {e}") from None
        self._txn = self._env.begin(write=True)
        self._pending = 0
        self._count = 0

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= self.BATCH:
            self._txn.commit()
            self._txn = self._env.begin(write=True)
            self._pending = 0

    def add(self, key: bytes, value: bytes = b"") -> bool:
        """Insert ``key`` unless present; return whether it was new."""
        new = self._txn.put(key, value, overwrite=False)
        if new:
            self._count += 1
            self._tick()
        return new

    def put(self, key: bytes, value: bytes) -> None:
        if self._txn.replace(key, value) is None:
            self._count += 1
        self._tick()

    def get(self, key: bytes) -> bytes | None:
        return self._txn.get(key)

    def __contains__(self, key: bytes) -> bool:
        return self._txn.get(key) is not None

    def __len__(self) -> int:
        return self._count

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) in key order (do not modify the table while iterating)."""
        for k, v in self._txn.cursor():
            yield bytes(k), bytes(v)

    def close(self) -> None:
        if self._env is not None:
            self._txn.abort()
            self._env.close()
            self._env = None
            self._rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> ScratchTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the message catalogue's cache (strongroom.messages.catalog_index) -----------------------

MESSAGE_SCHEMA = b"strongroom message cache 1"


class MessageCache:
    """Tables of the message catalogue's local cache, in their own LMDB environment (beside the
    index cache, so each can be deleted alone). Plain byte keys and values: what is secret is
    encrypted by the caller before it gets here. Writes are committed every TXN_ENTRIES puts."""

    TABLES = ("meta", "partnodes", "parts", "chunks", "snaps", "memos", "memodays", "verdicts")

    def __init__(self, path: str | os.PathLike) -> None:
        self._env = _acquire_env(os.fspath(path))
        self._dbs = {name: self._env.open_db(name.encode()) for name in self.TABLES}

    def close(self) -> None:
        if self._env is not None:
            _release_env(self._env)
            self._env = None

    def clear(self) -> None:
        with self._env.begin(write=True) as txn:
            for db in self._dbs.values():
                txn.drop(db, delete=False)

    def get(self, table: str, key: bytes) -> bytes | None:
        with self._env.begin() as txn:
            return txn.get(key, db=self._dbs[table])

    def get_many(self, table: str, keys: Iterable[bytes]) -> list[bytes | None]:
        db = self._dbs[table]
        with self._env.begin() as txn:
            return [txn.get(k, db=db) for k in keys]

    def has(self, table: str, key: bytes) -> bool:
        with self._env.begin(buffers=True) as txn:
            return txn.get(key, db=self._dbs[table]) is not None

    def put_many(self, table: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        db = self._dbs[table]
        txn = self._env.begin(write=True)
        try:
            pending = 0
            for key, value in items:
                if pending >= TXN_ENTRIES:
                    txn.commit()
                    txn = self._env.begin(write=True)
                    pending = 0
                txn.put(key, value, db=db)
                pending += 1
            txn.commit()
        except BaseException:
            txn.abort()
            raise

    def clear_table(self, table: str) -> None:
        with self._env.begin(write=True) as txn:
            txn.drop(self._dbs[table], delete=False)

    def delete_many(self, table: str, keys: Iterable[bytes]) -> None:
        db = self._dbs[table]
        with self._env.begin(write=True) as txn:
            for key in keys:
                txn.delete(key, db=db)

    def keys(self, table: str) -> list[bytes]:
        with self._env.begin() as txn:
            return [bytes(k) for k in txn.cursor(db=self._dbs[table]).iternext(values=False)]

    def count(self, table: str) -> int:
        with self._env.begin() as txn:
            return txn.stat(self._dbs[table])["entries"]
