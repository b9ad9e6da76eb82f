"""Reading many blobs in order with several reads in flight.

Reads, decryption, decompression and hashing run in worker threads (they release the GIL);
results come back in request order. Locations are looked up in batches (one LMDB transaction
each), and at most ``max_bytes`` of blobs are requested ahead.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Iterable, Iterator

from strongroom.errors import IntegrityError
from strongroom.index import BlobLocation
from strongroom.repository import Repository

LOOKUP_BATCH = 256


class BlobFetcher:
    def __init__(self, repo: Repository, *, threads: int = 4, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._repo = repo
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
        self._max_bytes = max_bytes

    def _fetch(self, location: BlobLocation) -> bytes:
        return self._repo.read_located(location)

    def _locations(self, blob_ids: Iterable[bytes]) -> Iterator[BlobLocation]:
        ids = iter(blob_ids)
        while batch := list(islice(ids, LOOKUP_BATCH)):
            for blob_id, location in zip(batch, self._repo.index.lookup_many(batch)):
                if location is None:
                    raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index (missing data)")
                yield location

    def fetch_all(self, blob_ids: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each blob's verified plaintext in order; raises on the first failure."""
        queue: deque[tuple[Future, int]] = deque()
        in_flight = 0
        try:
            for location in self._locations(blob_ids):
                size = location.entry.raw_length
                queue.append((self._pool.submit(self._fetch, location), size))
                in_flight += size
                while in_flight > self._max_bytes:
                    future, size = queue.popleft()
                    in_flight -= size
                    yield future.result()
            while queue:
                future, size = queue.popleft()
                yield future.result()
        finally:
            for future, _ in queue:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlobFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
