"""Reading many blobs in order with several reads in flight.

Reads, decryption, decompression and hashing run in worker threads (they release the GIL);
results come back in request order. At most ``max_bytes`` of blobs are requested ahead.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

from strongroom.pack import pack_path
from strongroom.repository import Repository


class BlobFetcher:
    def __init__(self, repo: Repository, *, threads: int = 4, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._repo = repo
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
        self._max_bytes = max_bytes

    def _fetch(self, blob_id: bytes) -> bytes:
        location = self._repo.locate(blob_id)
        raw = self._repo.storage.load(pack_path(location.pack), location.entry.offset, location.entry.length)
        return self._repo.decode_blob(location, raw)

    def fetch_all(self, blob_ids: Iterable[bytes]) -> Iterator[bytes]:
        """Yield each blob's verified plaintext in order; raises on the first failure."""
        queue: deque[tuple[Future, int]] = deque()
        in_flight = 0
        ids = iter(blob_ids)
        try:
            for blob_id in ids:
                size = self._repo.locate(blob_id).entry.raw_length
                queue.append((self._pool.submit(self._fetch, blob_id), size))
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
