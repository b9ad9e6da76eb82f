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
from strongroom.indexfile import PackRecord
from strongroom.pack import BlobEntry

_LOCATION = struct.Struct("<32s B B I Q I I")  # pack, type, compression, dictionary, offset, length, raw length
_PACKINFO = struct.Struct("<Q")
SCHEMA = b"strongroom index cache 1"


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
            os.makedirs(key, mode=0o700, exist_ok=True)
            try:
                env = lmdb.open(key, map_size=1 << 40, max_dbs=4, metasync=False, readahead=False)
            except lmdb.Error as e:
                raise StrongroomError(f"cannot open the index cache {key}: {e}") from None
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
        with self._env.begin(write=True) as txn:
            if txn.get(b"schema", db=self._meta) != SCHEMA:
                self._drop(txn)
                txn.put(b"schema", SCHEMA, db=self._meta)

    def close(self) -> None:
        if self._env is not None:
            _release_env(self._env)
            self._env = None

    def _drop(self, txn: lmdb.Transaction) -> None:
        for db in (self._blobs, self._packs, self._files):
            txn.drop(db, delete=False)

    def clear(self) -> None:
        with self._env.begin(write=True) as txn:
            self._drop(txn)

    def known_index_files(self) -> set[str]:
        with self._env.begin() as txn:
            return {bytes(k).decode() for k in txn.cursor(db=self._files).iternext(values=False)}

    def add_index_file(self, name: str, packs: Iterable[PackRecord]) -> None:
        """Record one index file's packs and blobs in a single transaction."""
        with self._env.begin(write=True) as txn:
            for p in packs:
                pack = bytes.fromhex(p.name)
                txn.put(pack, _PACKINFO.pack(p.size) + p.envelope, db=self._packs)
                put = txn.cursor(db=self._blobs).put
                for e in p.entries:
                    # An existing location is kept: any complete copy of a blob serves.
                    put(e.id, _LOCATION.pack(pack, e.type, e.compression, e.dictionary, e.offset, e.length,
                                             e.raw_length), overwrite=False)
            txn.put(name.encode(), b"", db=self._files)

    def has(self, blob_id: bytes) -> bool:
        with self._env.begin(buffers=True) as txn:
            return txn.get(blob_id, db=self._blobs) is not None

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        with self._env.begin() as txn:
            raw = txn.get(blob_id, db=self._blobs)
        if raw is None:
            return None
        pack, btype, comp, dictionary, offset, length, raw_len = _LOCATION.unpack(raw)
        return BlobLocation(pack.hex(), BlobEntry(blob_id, btype, comp, dictionary, offset, length, raw_len))

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
