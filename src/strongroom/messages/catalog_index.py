"""The local, encrypted index of the repository's message catalogues (the messages cache).

Kept per repository beside the blob index cache (``<cache>/<repository id>/messages``), rebuilt
from the catalogues in the repository whenever it lacks a snapshot. Message text never reaches
the disk in plaintext: every value that holds message data (chunks of records, part
descriptions) is compressed and sealed with AES-256-GCM under a key derived from the master key,
with the table and key as associated data. Keys are blob ids and snapshot ids, which the
repository's own index already shows. Tables (strongroom.index.MessageCache):

    chunks     block id        -> sealed(zstd(stats length u32, stats JSON, record lines))
    parts      header blob id  -> sealed(description JSON length u32, JSON, block ids)
    snaps      snapshot id     -> catalogue root id, then the header blob id of each part
    partnodes  part key        -> size u64, id count u32, ids, chunk-list ids (for backups' reuse)
    memos      export file key -> sealed(zstd(piece memo)): records per (state, piece) (catalog_memo)
    verdicts   keyed hash      -> 1 byte: a per-file recognition test's verdict on a file's content,
               or that a snapshot tree holds no export (HeadVerdicts)
    meta       schema and a key check (another key's cache is dropped, not misread)

Deduplication carries over: a chunk or part shared by thirty snapshots is stored and scanned
once; a snapshot costs one small ``snaps`` entry. The cache's unit is a *block* of a few
consecutive record chunks of a part (see cache_blocks), not the repository's chunk: chunks are
small (~3 KiB, spec §23.7) so that an edit rewrites little in the repository, but every cache
entry a query reads costs a lookup, a decryption and a decompression.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import blake3
import zstandard

from strongroom.compression import DEFAULT_LEVEL, decompress_frame
from strongroom.crypto.aead import NONCE_SIZE, Cipher
from strongroom.errors import IntegrityError, StrongroomError
from strongroom.fetcher import BlobFetcher
from strongroom.index import MESSAGE_SCHEMA, MessageCache
from strongroom.messages.catalog_format import PartHeader, Record, iter_records
from strongroom.messages.catalog_memo import PieceMemo
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.tree import DIR, FILE

CONTEXT_CACHE = "strongroom 2026-11-22 v1 message cache key"
_U32 = struct.Struct("<I")
_NODE = struct.Struct("<QII")
_DAY = struct.Struct("<I")
MAX_CHUNK_PLAIN = 64 * 1024 * 1024
# Blocks end after a chunk whose id's first byte is 0 mod BLOCK_MODULUS, or at BLOCK_MAX chunks:
# ~4 chunks (~12 KiB) each, and the same run of chunks gives the same blocks in every snapshot.
BLOCK_MODULUS = 4
BLOCK_MAX = 16
_CACHE_LAYOUT = b"blocks 1"  # part of the key check: a cache of another layout is rebuilt
_local = threading.local()


def _compress_sized(plain: bytes, level: int) -> bytes:
    """A zstd frame that records its content size, so reading it allocates just that much (a
    frame without it makes the decompressor allocate its whole limit, 64 MiB, for every value)."""
    compressors = getattr(_local, "compressors", None)
    if compressors is None:
        compressors = _local.compressors = {}
    compressor = compressors.get(level)
    if compressor is None:
        compressor = compressors[level] = zstandard.ZstdCompressor(level=level, write_content_size=True,
                                                                   write_checksum=False)
    return compressor.compress(plain)


def cache_blocks(chunk_ids: list[bytes]) -> list[tuple[bytes, list[bytes]]]:
    """A part's record chunks grouped into the cache's blocks: (block id, its chunk ids). Block
    ids are hashes of the chunk ids (no message data), never equal to a blob id."""
    blocks, current = [], []
    for chunk_id in chunk_ids:
        current.append(chunk_id)
        if chunk_id[0] % BLOCK_MODULUS == 0 or len(current) >= BLOCK_MAX:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return [(blake3.blake3(b"strongroom messages cache block\0" + b"".join(b)).digest(), b) for b in blocks]


def cache_folder(repo: Repository) -> str:
    return os.path.join(repo.cache_dir, "messages")


class PartNodes:
    """Part key -> the catalogue node content written for it: what lets a backup reuse a part
    without reading its export file again. Holds only blob ids (no message data)."""

    def __init__(self, cache: MessageCache) -> None:
        self.cache = cache
        self._pending: list[tuple[bytes, bytes]] = []

    def lookup(self, key: bytes, known: Callable[[bytes], bool]) -> tuple[list[bytes], list[bytes], int] | None:
        raw = self.cache.get("partnodes", key)
        if raw is None:
            return None
        size, n_ids, n_lists = _NODE.unpack_from(raw)
        body = raw[_NODE.size:]
        if len(body) != 32 * (n_ids + n_lists):
            return None
        ids = [body[i:i + 32] for i in range(0, 32 * n_ids, 32)]
        lists = [body[i:i + 32] for i in range(32 * n_ids, len(body), 32)]
        if not all(known(b) for b in ids) or not all(known(b) for b in lists):
            return None  # pruned, or never stored (an interrupted backup): read the file again
        return ids, lists, size

    def remember(self, key: bytes, ids: list[bytes], lists: list[bytes], size: int) -> None:
        self._pending.append((key, _NODE.pack(size, len(ids), len(lists)) + b"".join(ids) + b"".join(lists)))

    def flush(self) -> None:
        """Record what was remembered; call once the blobs are stored (after the writer's flush)."""
        if self._pending:
            self.cache.put_many("partnodes", self._pending)
            self._pending = []


class HeadVerdicts:
    """What recognition found, remembered so that an unchanged file or tree is not read again to
    be recognised: per (test, file content) whether a reader's per-file test accepted the file's
    first bytes (formats.common.head_test), and per snapshot tree that it holds no export. Keys
    are keyed hashes (the cache shows no content fingerprint); a verdict is one byte."""

    MAX_ENTRIES = 2_000_000  # past this the table is emptied (verdicts are only ever recomputed)

    def __init__(self, cache: MessageCache, keyed: Callable[[bytes], bytes]) -> None:
        self.cache = cache
        self._keyed = keyed
        self._pending: dict[bytes, bytes] = {}

    def file(self, content_hash: bytes, test: str, compute: Callable[[], bool]) -> bool:
        key = self._keyed(b"head verdict\0" + test.encode() + b"\0" + content_hash)
        found = self._pending.get(key) or self.cache.get("verdicts", key)
        if found is None:
            found = self._pending[key] = b"\1" if compute() else b"\0"
        return found == b"\1"

    def _tree_key(self, recognised: bytes) -> bytes:
        return self._keyed(b"no export in tree " + RECOGNITION_VERSION + b"\0" + recognised)

    def tree_without_exports(self, recognised: bytes) -> bool:
        """Whether a tree (as catalog_build._recognition_key names it) was found to hold no export."""
        return self.cache.get("verdicts", self._tree_key(recognised)) == b"\0"

    def remember_tree_without_exports(self, recognised: bytes) -> None:
        self._pending[self._tree_key(recognised)] = b"\0"

    def flush(self) -> None:
        if self._pending:
            if self.cache.count("verdicts") + len(self._pending) > self.MAX_ENTRIES:
                self.cache.clear_table("verdicts")
            self.cache.put_many("verdicts", sorted(self._pending.items()))
            self._pending = {}


#: Part of the key of "no export in this tree": change it when any reader recognises more.
RECOGNITION_VERSION = b"1"


#: A memo not rewritten for this many days is dropped (its export file is gone, or has not
#: changed since: then its part is reused without the memo, and a later change parses it once).
MEMO_KEEP_DAYS = 30


def _today() -> int:
    return int(time.time() // 86400)


class MemoTable:
    """Export file -> its piece memo (catalog_memo, spec §23.6): the record lines and reader
    states of the file's latest version, sealed like all message data here; and in ``memodays``
    the day each memo was last written, so that memos of files that are gone do not stay."""

    def __init__(self, index: MessageIndex) -> None:
        self._index = index
        self._pending: list[tuple[bytes, bytes]] = []

    def load(self, key: bytes) -> PieceMemo:
        return self.decoded(key, self.raw(key))

    def raw(self, key: bytes) -> bytes | None:
        """The memo's sealed value (for ``decoded``), or None."""
        return self._index.cache.get("memos", key)

    def decoded(self, key: bytes, raw: bytes | None) -> PieceMemo:
        """The memo of a sealed value (no cache access: a forked process may call this)."""
        if raw is None:
            return PieceMemo()
        try:
            return PieceMemo.decode(self._index._open("memos", key, raw))
        except IntegrityError:  # a damaged entry of a cache: parse the file again
            return PieceMemo()

    def remember(self, key: bytes, memo: PieceMemo) -> None:
        sealed = self.sealed(key, memo)
        if sealed is not None:
            self.remember_sealed(key, sealed)

    def sealed(self, key: bytes, memo: PieceMemo) -> bytes | None:
        """The value ``remember`` stores (no cache access), or None if it is not kept."""
        plain = memo.encode()
        if len(plain) > MAX_CHUNK_PLAIN:  # (bounded by MEMO_MAX_BYTES; this only guards the reader's cap)
            return None
        # zstd level 1: the whole memo is rewritten every time its file changes
        return self._index._seal("memos", key, plain, level=1)

    def remember_sealed(self, key: bytes, sealed: bytes) -> None:
        self._pending.append((key, sealed))

    def flush(self) -> None:
        """Record what was remembered (after the writer's flush, like the part nodes), and drop
        the memos not written for MEMO_KEEP_DAYS."""
        cache, today = self._index.cache, _today()
        if self._pending:
            cache.put_many("memos", self._pending)
            cache.put_many("memodays", [(key, _DAY.pack(today)) for key, _ in self._pending])
            self._pending = []
        keys = cache.keys("memos")
        days = cache.get_many("memodays", keys)
        undated = [(key, _DAY.pack(today)) for key, day in zip(keys, days) if day is None]
        if undated:  # written before days were kept: from today
            cache.put_many("memodays", undated)
        stale = [key for key, day in zip(keys, days) if day is not None and today - _DAY.unpack(day)[0] > MEMO_KEEP_DAYS]
        if stale:
            cache.delete_many("memos", stale)
            cache.delete_many("memodays", stale)

    def count(self) -> int:
        return self._index.cache.count("memos")


@dataclass
class PartInfo:
    platform: str
    source: str
    messages: int
    chunks: list[bytes]  # ids of the cache's blocks of the part's record chunks (cache_blocks)


@dataclass
class ChunkStats:
    """What ``messages stats`` needs of a chunk, per platform, without parsing its records."""

    per_platform: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def of_chunk(cls, data: bytes, what: str) -> ChunkStats:
        """The statistics of a chunk's record lines (only the fields they need are decoded; the
        records are checked in full when a query reads them)."""
        out: dict[str, dict] = {}
        loads = json.loads
        try:
            for line in data.splitlines():
                if not line:
                    continue
                d = loads(line)
                platform, time_ms = d["p"], d["t"]
                if type(time_ms) is not int:
                    raise ValueError("time is not an integer")
                s = out.get(platform)
                if s is None:
                    s = out[platform] = {"n": 0, "c": set(), "a": set(), "t0": time_ms, "t1": time_ms}
                s["n"] += 1
                s["c"].add(d["c"])
                s["a"].add(d["a"])
                if time_ms < s["t0"]:
                    s["t0"] = time_ms
                elif time_ms > s["t1"]:
                    s["t1"] = time_ms
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"{what}: malformed catalogue record ({e})") from None
        for s in out.values():
            s["c"], s["a"] = sorted(s["c"]), sorted(s["a"])
        return cls(out)


class MessageIndex:
    """The encrypted messages cache of one repository (needs a full key)."""

    def __init__(self, repo: Repository) -> None:
        repo.require_full_key("read the message catalogue")
        self.repo = repo
        self.cache = MessageCache(cache_folder(repo))
        key = blake3.blake3(repo.master.secret, derive_key_context=CONTEXT_CACHE).digest()
        self._cipher = Cipher(key)
        check = blake3.blake3(b"strongroom message cache key check" + _CACHE_LAYOUT, key=key).digest()
        if self.cache.get("meta", b"schema") != MESSAGE_SCHEMA or self.cache.get("meta", b"check") != check:
            self.cache.clear()
            self.cache.put_many("meta", [(b"schema", MESSAGE_SCHEMA), (b"check", check)])
        self.part_nodes = PartNodes(self.cache)
        self.memos = MemoTable(self)
        self.verdicts = HeadVerdicts(self.cache, repo.master.blob_id)

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> MessageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sealing -----------------------------------------------------------------------------

    def _seal(self, table: str, key: bytes, plain: bytes, level: int = DEFAULT_LEVEL) -> bytes:
        nonce = secrets.token_bytes(NONCE_SIZE)
        return nonce + self._cipher.seal(nonce, _compress_sized(plain, level), table.encode() + b"\0" + key)

    def _open(self, table: str, key: bytes, value: bytes) -> bytes:
        what = f"messages cache {table} entry {key.hex()[:16]}"
        plain = self._cipher.open(value[:NONCE_SIZE], value[NONCE_SIZE:], table.encode() + b"\0" + key, what)
        return decompress_frame(plain, MAX_CHUNK_PLAIN, what)

    # -- reading the cache -------------------------------------------------------------------

    def snapshot_parts(self, snapshot_id: str) -> list[bytes] | None:
        raw = self.cache.get("snaps", snapshot_id.encode())
        if raw is None:
            return None
        return [raw[i:i + 32] for i in range(32, len(raw), 32)]

    def part(self, part_id: bytes) -> PartInfo:
        raw = self.cache.get("parts", part_id)
        if raw is None:
            raise IntegrityError(f"messages cache: part {part_id.hex()[:16]} missing (delete the cache to rebuild it)")
        plain = self._open("parts", part_id, raw)
        n = _U32.unpack_from(plain)[0]
        doc = json.loads(plain[4:4 + n])
        body = plain[4 + n:]
        return PartInfo(doc["platform"], doc["source"], doc["messages"],
                        [body[i:i + 32] for i in range(0, len(body), 32)])

    def chunk(self, chunk_id: bytes) -> tuple[ChunkStats, bytes]:
        stats, data = self.chunk_raw(chunk_id)
        return ChunkStats(json.loads(stats)), data

    def chunk_raw(self, chunk_id: bytes) -> tuple[bytes, bytes]:
        """(statistics JSON, record lines) of a chunk, the statistics left unparsed."""
        raw = self.cache.get("chunks", chunk_id)
        if raw is None:
            raise IntegrityError(f"messages cache: chunk {chunk_id.hex()[:16]} missing (delete the cache to rebuild it)")
        plain = self._open("chunks", chunk_id, raw)
        n = _U32.unpack_from(plain)[0]
        return plain[4:4 + n], plain[4 + n:]

    def chunk_records(self, chunk_id: bytes) -> Iterator[Record]:
        return iter_records(self.chunk(chunk_id)[1], f"catalogue chunk {chunk_id.hex()[:16]}")

    # -- filling it from the repository ------------------------------------------------------

    def ensure(self, snapshots: Iterable[Snapshot], progress: Callable[[Snapshot], None] = lambda s: None,
               on_error: Callable[[Snapshot, StrongroomError], None] | None = None) -> int:
        """Index every catalogued snapshot the cache lacks; return how many were read. A catalogue
        that cannot be read raises, or with ``on_error`` is reported there and left out."""
        added = 0
        for snap in snapshots:
            if snap.catalog is None or self.cache.has("snaps", snap.id.encode()):
                continue
            progress(snap)
            try:
                self._ingest(snap)
            except StrongroomError as e:
                if on_error is None:
                    raise
                on_error(snap, e)
                continue
            added += 1
        return added

    def forget_missing(self, live_ids: set[str]) -> int:
        """Drop cached snapshots the repository no longer has, then parts and chunks nothing uses."""
        gone = [k for k in self.cache.keys("snaps") if k.decode() not in live_ids]
        if not gone:
            return 0
        self.cache.delete_many("snaps", gone)
        used_parts = set()
        for k in self.cache.keys("snaps"):
            used_parts.update(self.snapshot_parts(k.decode()) or ())
        dead_parts = [p for p in self.cache.keys("parts") if p not in used_parts]
        used_chunks = set()
        for p in used_parts:
            used_chunks.update(self.part(p).chunks)
        self.cache.delete_many("parts", dead_parts)
        self.cache.delete_many("chunks", [c for c in self.cache.keys("chunks") if c not in used_chunks])
        return len(gone)

    def _ingest(self, snap: Snapshot) -> None:
        repo = self.repo
        part_ids: list[bytes] = []
        stack = [bytes.fromhex(snap.catalog)]
        while stack:
            for node in repo.load_tree(stack.pop()):
                if node.type == DIR:
                    stack.append(node.subtree)
                elif node.type == FILE:
                    ids = list(repo.file_chunks(node))
                    if not ids:
                        raise IntegrityError(f"snapshot {snap.short_id}: empty catalogue part {node.name!r}")
                    part_ids.append(ids[0])
                    if not self.cache.has("parts", ids[0]):
                        self._ingest_part(ids, node)
        part_ids.sort()
        self.part_nodes.flush()
        self.cache.put_many("snaps", [(snap.id.encode(), bytes.fromhex(snap.catalog) + b"".join(part_ids))])

    def _ingest_part(self, ids: list[bytes], node) -> None:
        header_id, chunk_ids = ids[0], ids[1:]
        header = PartHeader.decode(self.repo.load_blob(header_id), f"catalogue part header {header_id.hex()[:16]}")
        blocks = cache_blocks(chunk_ids)
        block_ids = [block_id for block_id, _ in blocks]
        missing = [b for b, v in zip(blocks, self.cache.get_many("chunks", block_ids)) if v is None]
        if missing:
            with BlobFetcher(self.repo, threads=2) as fetcher:
                batch = []
                datas = fetcher.fetch_all([c for _, members in missing for c in members])
                for block_id, members in missing:
                    data = b"".join(next(datas) for _ in members)
                    stats = ChunkStats.of_chunk(data, f"catalogue chunk {members[0].hex()[:16]}")
                    doc = json.dumps(stats.per_platform, sort_keys=True, separators=(",", ":")).encode()
                    batch.append((block_id, self._seal("chunks", block_id, _U32.pack(len(doc)) + doc + data)))
                    if len(batch) >= 256:
                        self.cache.put_many("chunks", batch)
                        batch = []
                self.cache.put_many("chunks", batch)
        doc = json.dumps({"platform": header.platform, "source": header.source, "messages": header.messages}, sort_keys=True, separators=(",", ":")).encode()
        self.cache.put_many("parts", [(header_id, self._seal("parts", header_id,
                                                             _U32.pack(len(doc)) + doc + b"".join(block_ids)))])
        self.part_nodes.remember(header.key, node.content, node.content_lists, node.size)
