"""Reading many blobs in order, with the decoding spread over worker threads.

Requests go into a :class:`BlobStream` (a blob id and a tag of the caller's choosing) and come
out in the same order, each as its verified plaintext or as the exception that reading it raised.
Between the two:

- locations are looked up in batches (one LMDB transaction each);
- consecutive requests that lie close together in one pack (the usual case: a backup writes a
  file's new chunks, and the next file's, in order) are grouped into a *run*, read with one
  storage load, whatever file they belong to;
- members of one group (spec "Grouped blobs") share a ciphertext; each worker keeps the groups
  it decoded last (about 1 MiB), so a group is decrypted and decompressed once however many of
  its members are asked for, close together;
- runs are grouped into *batches* of about ``BATCH_BYTES``; each batch is one task for a worker
  thread, which reads its runs and authenticates, decrypts, decompresses and re-hashes every
  blob (those steps release the GIL, so the workers and the consumer use all cores);
- at most ``max_bytes`` of blobs are in flight (requested from storage and not yet taken by the
  consumer); requests beyond that wait as bare locations, which cost a few dozen bytes each.

A damaged blob fails only itself: its neighbours in the run are still decoded and returned.
:meth:`BlobFetcher.fetch_all` is the simple form: an iterator of plaintexts that raises at the
first failure.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator

from strongroom.errors import ObjectNotFound, StrongroomError
from strongroom.index import BlobLocation
from strongroom.pack import GroupMemo, pack_path
from strongroom.repository import Repository

LOOKUP_BATCH = 256
#: Largest byte range read for one run. Bigger means fewer loads (and far fewer requests on S3);
#: it is also the most a run holds in memory besides its plaintexts.
MAX_RUN_BYTES = 4 * 1024 * 1024
#: Bytes between two blobs that are read and thrown away rather than starting a new run
#: (cheaper than another load on every backend; on S3 a request costs far more than 256 KiB).
MAX_GAP_BYTES = 256 * 1024
#: A worker task holds runs worth at least this much (unless the stream runs dry or is at its
#: byte cap): scattered small blobs then cost one task per batch, not one per blob.
BATCH_BYTES = 1024 * 1024
#: Requests waiting for a location or for room in flight, at most (bounds their memory).
MAX_WAITING = 4096

Item = Any  # bytes, or the exception reading that blob raised


class _Run:
    """Blobs of one pack read with a single load of ``[start, end)``."""

    __slots__ = ("pack", "start", "end", "locations", "raw_bytes")

    def __init__(self, location: BlobLocation) -> None:
        entry = location.entry
        self.pack = location.pack
        self.start = entry.offset
        self.end = entry.offset + entry.length
        self.locations = [location]
        self.raw_bytes = entry.raw_length

    def try_add(self, location: BlobLocation) -> bool:
        """Take ``location`` if it lies in this run's pack within reach; whether it was taken."""
        entry = location.entry
        end = entry.offset + entry.length
        if (location.pack != self.pack or entry.offset < self.start or entry.offset > self.end + MAX_GAP_BYTES
                or max(end, self.end) - self.start > MAX_RUN_BYTES):
            return False
        self.end = max(end, self.end)
        self.locations.append(location)
        self.raw_bytes += entry.raw_length
        return True

    @property
    def cost(self) -> int:
        """Memory it holds while in flight: its plaintexts (or the stored range, if larger)."""
        return max(self.raw_bytes, self.end - self.start)


class _Batch:
    """Consecutive requests decoded by one worker task: runs, and failures known up front
    (a blob missing from the index) in their place. ``tags`` has one entry per result."""

    __slots__ = ("parts", "tags", "cost", "future", "results", "taken")

    def __init__(self) -> None:
        self.parts: list[_Run | BaseException] = []
        self.tags: list[Any] = []
        self.cost = 0
        self.future: Future | None = None
        self.results: list[Item] | None = None
        self.taken = 0


class BlobStream:
    """Ordered blob requests with bounded look-ahead (see the module docstring). Not thread-safe:
    one consumer adds and takes; the decoding happens in the fetcher's workers."""

    def __init__(self, fetcher: BlobFetcher) -> None:
        self._fetcher = fetcher
        self._repo = fetcher.repo
        self._max_bytes = fetcher.max_bytes
        self._unresolved: list[tuple[bytes, Any]] = []  # (blob id, tag) not yet looked up
        self._located: deque[tuple[BlobLocation | BaseException, Any]] = deque()  # waiting for room
        self._run: _Run | None = None  # the run being built (belongs to self._open)
        self._open = _Batch()  # the batch being built
        self._submitted: deque[_Batch] = deque()
        self._in_flight = 0  # cost of submitted batches not yet taken, plus the open batch
        self.pending = 0  # requests added and not yet taken

    @property
    def wants_more(self) -> bool:
        """Whether adding requests now would keep the workers busy without passing the caps."""
        return self._in_flight < self._max_bytes and len(self._unresolved) + len(self._located) < MAX_WAITING

    def add(self, blob_id: bytes, tag: Any = None) -> None:
        self._unresolved.append((blob_id, tag))
        self.pending += 1
        if len(self._unresolved) >= LOOKUP_BATCH:
            self._resolve()
            self._pump()

    def flush(self) -> None:
        """Start reading everything added so far (call when no more requests follow soon)."""
        self._resolve()
        self._pump()
        self._submit_open()

    def take(self) -> tuple[Any, Item]:
        """(tag, plaintext or exception) of the oldest request not yet taken; blocks."""
        if not self.pending:
            raise IndexError("take() from a BlobStream with nothing pending")
        if len(self._submitted) <= 1:
            # Keep the workers busy while this batch is consumed (a partial batch beats idle cores).
            self.flush()
        batch = self._submitted[0]
        if batch.results is None:
            batch.results = batch.future.result()
            batch.future = None
        i = batch.taken
        batch.taken += 1
        self.pending -= 1
        tag, item = batch.tags[i], batch.results[i]
        batch.results[i] = None  # the consumer owns it now
        if batch.taken == len(batch.tags):
            self._submitted.popleft()
            self._in_flight -= batch.cost
            self._pump()
        return tag, item

    def close(self) -> None:
        """Cancel what has not started; results still being decoded are dropped."""
        for batch in self._submitted:
            if batch.future is not None:
                batch.future.cancel()
        self._submitted.clear()
        self._unresolved.clear()
        self._located.clear()

    # -- internals --------------------------------------------------------------------------

    def _resolve(self) -> None:
        if not self._unresolved:
            return
        batch, self._unresolved = self._unresolved, []
        repo = self._repo
        for (blob_id, tag), location in zip(batch, repo.index.lookup_many([i for i, _ in batch])):
            if location is None:
                # A miss goes through Repository.locate: it looks once more in fresh index files
                # and raises the one "not in the index" error.
                try:
                    location = repo.locate(blob_id)
                except StrongroomError as e:
                    location = e
            self._located.append((location, tag))

    def _pump(self) -> None:
        """Move located requests into runs and batches while there is room in flight."""
        located = self._located
        while located and self._in_flight < self._max_bytes:
            location, tag = located.popleft()
            batch = self._open
            if isinstance(location, BaseException):
                self._run = None
                batch.parts.append(location)
            elif self._run is not None and self._run.try_add(location):
                batch.cost += location.entry.raw_length
                self._in_flight += location.entry.raw_length
            else:
                if self._run is not None and batch.cost >= BATCH_BYTES:
                    self._submit_open()
                    batch = self._open
                self._run = _Run(location)
                batch.parts.append(self._run)
                batch.cost += location.entry.raw_length
                self._in_flight += location.entry.raw_length
            batch.tags.append(tag)
        if self._in_flight >= self._max_bytes:
            self._submit_open()

    def _submit_open(self) -> None:
        batch = self._open
        if not batch.tags:
            return
        # What a run costs beyond its plaintexts (gaps read through) is counted once it is final.
        extra = sum(part.cost - part.raw_bytes for part in batch.parts if isinstance(part, _Run))
        batch.cost += extra
        self._in_flight += extra
        batch.future = self._fetcher.submit(batch.parts)
        self._submitted.append(batch)
        self._open = _Batch()
        self._run = None


class BlobFetcher:
    """Worker threads that read and decode blobs for :class:`BlobStream` s and ``fetch_all``."""

    def __init__(self, repo: Repository, *, threads: int = 4, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.repo = repo
        self.max_bytes = max_bytes
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
        self._local = threading.local()  # per worker: the groups it decoded last (pack.GroupMemo)

    def stream(self) -> BlobStream:
        return BlobStream(self)

    def fetch_all(self, blob_ids: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each blob's verified plaintext in order; raises on the first failure."""
        stream = self.stream()
        try:
            for blob_id in blob_ids:
                stream.add(blob_id)
                while not stream.wants_more:
                    yield _value(stream.take()[1])
            stream.flush()
            while stream.pending:
                yield _value(stream.take()[1])
        finally:
            stream.close()

    def submit(self, parts: list[_Run | BaseException]) -> Future:
        return self._pool.submit(self._decode, parts)

    def _decode(self, parts: list[_Run | BaseException]) -> list[Item]:
        out: list[Item] = []
        for part in parts:
            if isinstance(part, BaseException):
                out.append(part)
            else:
                self._decode_run(part, out)
        return out

    def _decode_run(self, run: _Run, out: list[Item]) -> None:
        """Append each blob of the run, or the exception decoding it raised."""
        repo = self.repo
        memo = getattr(self._local, "memo", None)
        if memo is None:
            memo = self._local.memo = GroupMemo()
        if len(run.locations) == 1:
            try:
                out.append(repo.read_located(run.locations[0], memo))
            except Exception as e:  # noqa: BLE001 - handed to the consumer in order
                out.append(e)
            return
        try:
            raw = memoryview(repo.storage.load(pack_path(run.pack), run.start, run.end - run.start))
        except ObjectNotFound:
            raw = None  # the pack vanished: as Repository.read_located does, look for other copies
        except Exception as e:  # noqa: BLE001
            out.extend([e] * len(run.locations))
            return
        for location in run.locations:
            try:
                if raw is None:
                    repo.forget_missing_packs({run.pack})  # a no-op after the first time
                    out.append(repo.read_located(repo.locate(location.entry.id)))
                else:
                    offset = location.entry.offset - run.start
                    # A truncated pack gives a short slice, which decode_blob rejects.
                    out.append(repo.decode_blob(location, raw[offset:offset + location.entry.length], memo))
            except Exception as e:  # noqa: BLE001
                out.append(e)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlobFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _value(item: Item) -> bytes:
    if isinstance(item, BaseException):
        raise item
    return item
