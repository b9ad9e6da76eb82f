"""The blob writer: deduplicate, compress and encrypt blobs in parallel, fill packs, store them,
and record them in index files.

Ordering guarantees (what makes an interrupted backup harmless):
  1. a pack is stored whole (atomically) before any index file names it;
  2. an index file is stored before its blobs enter the local index cache;
  3. the caller writes a snapshot only after ``flush()`` returned.
So every blob a snapshot references is in a stored pack listed by a stored index file.

Memory is bounded: at most ``MAX_QUEUED_BYTES`` of blobs wait for compression, one open pack per
blob type, ``MAX_UPLOADS`` packs in flight (or the backend's ``parallel_uploads``: an object store
over the network wants more requests in flight than a local disk), and an index file is written every
``INDEX_FLUSH_BLOBS`` blobs, after which their ids leave the in-memory pending set.

Dictionaries (spec "Compression dictionaries"): when the config enables them, text DATA blobs are
compressed with the repository's dictionary (the lowest id in ``dicts/``). A repository without one
trains it from the first text chunks (at most ``dictionary.MAX_SAMPLE_BYTES``): as soon as the sample
is full, or at ``flush()`` if it is large enough. The dictionary is stored before any pack that
uses it is sealed, so every indexed blob's dictionary exists.

Groups (spec "Grouped blobs"): when the config sets ``group_size``, consecutive new text DATA
blobs of at most ``group_member_max`` bytes are collected (across files) into a group of about
``group_size`` bytes, compressed as one frame and sealed as one ciphertext: small chunks then
deduplicate as finely as their size allows without paying a tag and a frame of their own.
"""

from __future__ import annotations

import os
from collections import deque
from typing import BinaryIO
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import blake3

from strongroom import dictionary
from strongroom.compression import compress_blob_with
from strongroom.errors import IntegrityError
from strongroom.indexfile import PackRecord
from strongroom.pack import DATA, TREE, PackWriter
from strongroom.tree import MAX_INLINE_CHUNKS, encode_chunk_list

if TYPE_CHECKING:
    from strongroom.repository import Repository

MAX_QUEUED_BYTES = 64 * 1024 * 1024
MAX_QUEUED_BLOBS = 4096
# Blobs go to the compression workers in batches (one task per ~1 MiB, not one per blob: the
# per-task overhead of the thread pool costs more than compressing a small text chunk).
BATCH_BYTES = 1024 * 1024
BATCH_BLOBS = 128
MAX_UPLOADS = 2
INDEX_FLUSH_BLOBS = 100_000
DRY_RUN_MAX_PENDING = 1_000_000
MAX_GROUP_MEMBERS = 256  # members per group (far below the format's limit)


class BlobWriter:
    def __init__(self, repo: Repository, *, threads: int | None = None, dry_run: bool = False) -> None:
        self._repo = repo
        self._dry_run = dry_run
        self._level = repo.config.compression_level
        self._pack_size = repo.config.pack_size
        self._pool = ThreadPoolExecutor(threads or max(2, os.cpu_count() or 2), thread_name_prefix="compress")
        self._max_uploads = max(1, int(getattr(repo.storage, "parallel_uploads", MAX_UPLOADS)))
        self._upload_pool = ThreadPoolExecutor(self._max_uploads, thread_name_prefix="upload")
        # batches in flight, in order: ([(members, type, raw length)], future of [(code, dict id, payload)]),
        # members being [(id, raw length)]: one for a plain blob, several for a group
        self._queue: deque[tuple[list[tuple[list[tuple[bytes, int]], int, int]], Future]] = deque()
        self._queued_blobs = 0
        self._queued_bytes = 0
        self._batch: list[tuple[list[tuple[bytes, int]], int, int]] = []
        self._batch_work: list[tuple[bytes, int, int, object]] = []
        self._batch_bytes = 0
        self._pending: set[bytes] = set()
        self._packers: dict[int, PackWriter] = {}
        self._uploads: deque[tuple[Future, PackRecord]] = deque()
        self._stored: list[PackRecord] = []
        self._stored_blobs = 0
        self.blobs_added = 0
        self.bytes_added = 0  # as stored: compressed and encrypted
        self.raw_bytes_added = 0
        self.packs_written = 0
        self.index_files_written: list[str] = []
        self.dictionary_trained = 0  # id of the dictionary this writer trained and stored, if any
        self._dict_id, self._zdict, self._sampler = 0, None, None
        self._group_size = repo.config.group_size
        self._group_member_max = repo.config.group_member_max
        self._group: list[tuple[bytes, bytes]] = []  # the open group: (id, plaintext)
        self._group_bytes = 0
        if repo.config.dictionary_size and not dry_run:
            ids = repo.dictionaries.ids()
            if not ids:
                self._sampler = dictionary.Sampler()
            else:
                try:
                    self._dict_id, self._zdict = ids[0], repo.dictionaries.get(ids[0])
                except IntegrityError:
                    self._dict_id = 0  # damaged (check reports it): back up without a dictionary

    # -- adding blobs ------------------------------------------------------------------------

    def known(self, blob_id: bytes) -> bool:
        return blob_id in self._pending or self._repo.index.has(blob_id)

    def known_all(self, blob_ids: list[bytes]) -> bool:
        """``all(known(i) for i in blob_ids)`` with one index transaction."""
        pending = self._pending
        return self._repo.index.has_all(i for i in blob_ids if i not in pending)

    def add(self, blob_type: int, data: bytes, blob_id: bytes | None = None, *, text: bool = False,
            unknown: bool = False) -> tuple[bytes, bool]:
        """Queue a blob unless the repository already has it; return (id, whether it was new).
        ``text``: a chunk of text content (chunker.TEXT), which a dictionary may compress.
        ``unknown``: the caller has just seen ``known(blob_id)`` say no (one index lookup less)."""
        if blob_id is None:
            blob_id = self._repo.master.blob_id(data)
        if not unknown and self.known(blob_id):
            return blob_id, False
        if self._dry_run:
            # Count what would be added; remember ids only up to a bound (an estimate beyond it).
            if len(self._pending) < DRY_RUN_MAX_PENDING:
                self._pending.add(blob_id)
            self.blobs_added += 1
            self.raw_bytes_added += len(data)
            self.bytes_added += len(data)
            return blob_id, True
        self._pending.add(blob_id)
        use_dict = text and blob_type == DATA
        if use_dict and self._sampler is not None and self._sampler.offer(data):
            self._train()
        if use_dict and self._group_size and len(data) <= self._group_member_max:
            self._group.append((blob_id, bytes(data)))
            self._group_bytes += len(data)
            if self._group_bytes >= self._group_size or len(self._group) >= MAX_GROUP_MEMBERS:
                self._close_group()
        else:
            dict_id, zdict = (self._dict_id, self._zdict) if use_dict else (0, None)
            self._queue_work([(blob_id, len(data))], blob_type, data, dict_id, zdict)
        return blob_id, True

    def _close_group(self) -> None:
        """Queue the open group as one work item (one frame, one ciphertext)."""
        if not self._group:
            return
        members = [(blob_id, len(data)) for blob_id, data in self._group]
        data = b"".join(data for _, data in self._group)
        self._group, self._group_bytes = [], 0
        self._queue_work(members, DATA, data, self._dict_id, self._zdict)

    def _queue_work(self, members: list[tuple[bytes, int]], blob_type: int, data: bytes | memoryview,
                    dict_id: int, zdict: object) -> None:
        self._batch.append((members, blob_type, len(data)))
        self._batch_work.append((data, self._level, dict_id, zdict))
        self._batch_bytes += len(data)
        self._queued_bytes += len(data)
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_BLOBS:
            self._submit_batch()
        if self._queued_bytes > MAX_QUEUED_BYTES or self._queued_blobs > MAX_QUEUED_BLOBS:
            self._drain(block_until=MAX_QUEUED_BYTES // 2)
        else:
            self._drain(block_until=None)

    def _submit_batch(self) -> None:
        if self._batch:
            self._queue.append((self._batch, self._pool.submit(_compress_batch, self._batch_work)))
            self._queued_blobs += len(self._batch)
            self._batch, self._batch_work, self._batch_bytes = [], [], 0

    def _drain(self, block_until: int | None) -> None:
        """Move compressed blobs, in order, into packs. With ``block_until``, wait until the queue
        holds at most that many bytes; otherwise take only what is already done."""
        while self._queue:
            batch, future = self._queue[0]
            if not future.done() and (block_until is None or self._queued_bytes <= block_until):
                return
            results = future.result()
            self._queue.popleft()
            self._queued_blobs -= len(batch)
            for (members, blob_type, raw_length), (compression, dict_id, payload) in zip(batch, results):
                self._queued_bytes -= raw_length
                packer = self._packers.get(blob_type)
                if packer is None:
                    packer = self._packers[blob_type] = PackWriter(self._repo.master)
                entries = packer.add_group(members, blob_type, compression, payload, dict_id)
                self.blobs_added += len(members)
                self.bytes_added += entries[0].length
                self.raw_bytes_added += raw_length
                if packer.size >= self._pack_size:
                    self._seal_pack(blob_type)

    def _seal_pack(self, blob_type: int) -> None:
        packer = self._packers.pop(blob_type)
        name, data = packer.finish()
        record = PackRecord(name, len(data), packer.envelope, packer.entries)
        while len(self._uploads) >= self._max_uploads:
            self._finish_upload()
        self._uploads.append((self._upload_pool.submit(self._repo.store_pack, name, data), record))

    def _finish_upload(self) -> None:
        future, record = self._uploads.popleft()
        future.result()
        self.packs_written += 1
        self._stored.append(record)
        self._stored_blobs += len(record.entries)
        if self._stored_blobs >= INDEX_FLUSH_BLOBS:
            self._write_index()

    def _write_index(self) -> None:
        if not self._stored:
            return
        name = self._repo.save_index(self._stored)
        self.index_files_written.append(name)
        for record in self._stored:
            for entry in record.entries:
                self._pending.discard(entry.id)
        self._stored = []
        self._stored_blobs = 0

    def _train(self) -> None:
        """Train a dictionary on the sample, store it, and use it from now on (once per writer)."""
        samples, self._sampler = self._sampler.samples, None
        content = dictionary.train(samples, self._repo.config.dictionary_size)
        if content is None:
            return
        dict_id = self._repo.dictionaries.save(content)  # stored before any pack can name it
        if dict_id:
            self._dict_id, self._zdict = dict_id, self._repo.dictionaries.get(dict_id)
            self.dictionary_trained = dict_id

    # -- finishing ---------------------------------------------------------------------------

    def flush(self, *, train: bool = True) -> None:
        """Store every queued blob and write the index file(s) that list them. ``train=False``:
        a flush in the middle of a backup, which leaves the dictionary's sample to fill up."""
        if train and self._sampler is not None and self._sampler.size >= dictionary.MIN_SAMPLE_BYTES:
            self._train()  # a small first backup: the next ones use the dictionary
        self._close_group()
        self._submit_batch()
        self._drain(block_until=0)
        for blob_type in (DATA, TREE):
            if blob_type in self._packers:
                self._seal_pack(blob_type)
        while self._uploads:
            self._finish_upload()
        self._write_index()

    def close(self) -> None:
        """Stop the worker threads. Unflushed blobs are dropped (never referenced by anything)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._upload_pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _compress_batch(work: list[tuple[bytes, int, int, object]]) -> list[tuple[int, int, bytes | memoryview]]:
    return [compress_blob_with(data, level, dict_id, zdict) for data, level, dict_id, zdict in work]


class FileContent:
    """Collects a file's chunk ids in order and moves them into chunk-list blobs every
    MAX_INLINE_CHUNKS ids, so a file's id list never grows in memory (spec: Trees)."""

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = writer
        self.ids: list[bytes] = []
        self.lists: list[bytes] = []

    def append(self, blob_id: bytes) -> None:
        self.ids.append(blob_id)
        if len(self.ids) == MAX_INLINE_CHUNKS:
            self._spill()

    def _spill(self) -> None:
        self.lists.append(self._writer.add(TREE, encode_chunk_list(self.ids))[0])
        self.ids = []

    def finish(self) -> tuple[list[bytes], list[bytes]]:
        """(inline ids, chunk-list ids): inline only for files of fewer than MAX_INLINE_CHUNKS."""
        if self.lists and self.ids:
            self._spill()
        return self.ids, self.lists


def content_hasher() -> blake3.blake3:
    """A hasher for a file's ``content_hash`` (spec "Trees"): plain BLAKE3 of the whole content
    (what ``b3sum`` prints). Not keyed: it lives only inside encrypted trees, which only full-key
    holders read, and it stays valid when ``copy`` moves a tree to another repository.
    One thread: BLAKE3's ``max_threads=2`` halves the wall time of an 8 MiB update on an idle
    machine, but costs 30-130 % more CPU time on a busy one (bench/RESULTS.md §11.1)."""
    return blake3.blake3()


def hash_stream(stream: BinaryIO, buffer: bytearray) -> tuple[bytes, int]:
    """(content hash, length) of the rest of ``stream``, read through ``buffer``."""
    hasher = content_hasher()
    view = memoryview(buffer)
    total = 0
    while n := stream.readinto(view):
        hasher.update(view[:n])
        total += n
    return hasher.digest(), total
