"""Reading many blobs in order with several reads in flight.

Consecutive requested blobs that lie close together in one pack (the usual case: a backup
writes a file's new chunks in order) are grouped into a *run* and read with one storage load;
each run is one task for a worker thread, which authenticates, decrypts, decompresses and
re-hashes its blobs one by one (those steps release the GIL). Results come back in request order.
Locations are looked up in batches (one LMDB transaction each), and at most ``max_bytes`` of
blobs are requested ahead.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Iterable, Iterator

from strongroom.errors import ObjectNotFound
from strongroom.index import BlobLocation
from strongroom.pack import pack_path
from strongroom.repository import Repository

LOOKUP_BATCH = 256
#: Largest byte range read for one run. Bigger means fewer loads (and far fewer requests on S3);
#: it is also the most a run holds in memory besides its plaintexts.
MAX_RUN_BYTES = 4 * 1024 * 1024
#: Bytes between two blobs that are read and thrown away rather than starting a new run
#: (cheaper than another load on every backend; on S3 a request costs far more than 256 KiB).
MAX_GAP_BYTES = 256 * 1024


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


class BlobFetcher:
    def __init__(self, repo: Repository, *, threads: int = 4, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._repo = repo
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
        self._max_bytes = max_bytes

    def _fetch_run(self, run: _Run) -> tuple[list[bytes], BaseException | None]:
        """Decode the run's blobs in order; stop at the first failure and return it with the
        blobs decoded before it (the caller yields those, then raises it)."""
        out: list[bytes] = []
        repo = self._repo
        if len(run.locations) == 1:
            try:
                out.append(repo.read_located(run.locations[0]))
                return out, None
            except Exception as e:  # noqa: BLE001 - handed to the consumer in order
                return out, e
        try:
            raw = memoryview(repo.storage.load(pack_path(run.pack), run.start, run.end - run.start))
        except ObjectNotFound:
            raw = None  # the pack vanished: as Repository.read_located does, look for other copies
        except Exception as e:  # noqa: BLE001
            return out, e
        for location in run.locations:
            try:
                if raw is None:
                    repo.forget_missing_packs({run.pack})  # a no-op after the first time
                    out.append(repo.read_located(repo.locate(location.entry.id)))
                else:
                    offset = location.entry.offset - run.start
                    # A truncated pack gives a short slice, which decode_blob rejects.
                    out.append(repo.decode_blob(location, raw[offset:offset + location.entry.length]))
            except Exception as e:  # noqa: BLE001
                return out, e
        return out, None

    def _locations(self, blob_ids: Iterable[bytes]) -> Iterator[BlobLocation]:
        ids = iter(blob_ids)
        while batch := list(islice(ids, LOOKUP_BATCH)):
            for blob_id, location in zip(batch, self._repo.index.lookup_many(batch)):
                # A miss goes through Repository.locate: it looks once more in fresh index files
                # and raises the one "not in the index" error.
                yield location if location is not None else self._repo.locate(blob_id)

    def _runs(self, blob_ids: Iterable[bytes]) -> Iterator[_Run]:
        run: _Run | None = None
        for location in self._locations(blob_ids):
            if run is not None and run.try_add(location):
                continue
            if run is not None:
                yield run
            run = _Run(location)
        if run is not None:
            yield run

    def fetch_all(self, blob_ids: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each blob's verified plaintext in order; raises on the first failure."""
        queue: deque[tuple[Future, int]] = deque()
        in_flight = 0

        def take() -> Iterator[bytes]:
            nonlocal in_flight
            future, cost = queue.popleft()
            in_flight -= cost
            blobs, error = future.result()
            yield from blobs
            if error is not None:
                raise error

        try:
            for run in self._runs(blob_ids):
                queue.append((self._pool.submit(self._fetch_run, run), run.cost))
                in_flight += run.cost
                while in_flight > self._max_bytes:
                    yield from take()
            while queue:
                yield from take()
        finally:
            for future, _ in queue:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlobFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
