"""Chunking a changed file guided by its previous version's chunk list (spec §7.5).

A cut depends only on the bytes from its chunk's start: with plain FastCDC (§7.2) on the chunk's
own bytes when the content or ``max`` cut it, with record boundaries (§7.4) on at most ``max``
bytes from the start. So where a changed file still holds a previous chunk's bytes at a chunk
start, that chunk is cut there again, and hashing those bytes with the chunk's length taken from
the index (keyed BLAKE3, about a quarter of FastCDC's cost) replaces chunking them. Only around an
edit does FastCDC run, until a freshly cut chunk is one of the previous version's again.

When a previous chunk's cut is proven ("confirmed"):
  * plain: as soon as its bytes match, unless it was the previous version's last chunk, which the
    end of the file cut (then only if it is ``max`` long, or the new file ends right after it);
  * records: once the bytes matched so far reach ``max`` past its start, or both versions end
    right after the matched bytes.
Unconfirmed matches are chunked again with FastCDC. The chunks are therefore exactly those of
``chunker.chunk_views`` (tests/test_rechunk.py compares both on many edits). A file edited all
over (every few KiB, as the benchmark corpus's histories are) has nothing to skip: after
GIVE_UP_AFTER failed checks that outnumber the matches two to one, it is chunked like a new file.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from strongroom.chunker import ChunkerParams, buffer_size_for, chunk_cuts

# How far ahead in the previous chunk list a freshly cut chunk is looked for (memory stays bounded
# whatever the file's size; an edit that removed more than this many chunks only costs FastCDC).
LOOKAHEAD = 4096
LENGTH_BATCH = 16  # previous chunk lengths asked for at once
# A file whose previous chunks keep failing to match (edited all over) is chunked like a new one
# from then on: each failed check costs a keyed hash of a chunk and restarts FastCDC.
GIVE_UP_AFTER = 8
_NEVER = 1 << 62
_UNASKED = object()


class PreviousChunks:
    """The previous version's chunk ids in order, read ahead at most LOOKAHEAD. Their lengths are
    asked of ``lengths`` (ids -> length, or None when unknown: such a chunk is never verified, only
    skipped by a resync) a few at a time, only for chunks about to be verified: in a file edited
    all over, most previous chunks are never verified."""

    def __init__(self, ids: Iterable[bytes], lengths: Callable[[list[bytes]], list[int | None]]) -> None:
        self._source = iter(ids)
        self._lengths = lengths
        self._ids: list[bytes] = []  # the window: previous chunks base, base + 1, ...
        self._lens: list = []  # their lengths, _UNASKED until asked
        self._where: dict[bytes, int] = {}  # id -> its first index in the window
        self._base = 0
        self._next = 0  # index (counted from the file's first chunk) of the next previous chunk
        self._done = False
        self._slide()

    def _slide(self) -> None:
        """Start the window at the next chunk and fill it up to LOOKAHEAD ids."""
        keep = self._next - self._base
        self._ids, self._lens = self._ids[keep:], self._lens[keep:]
        self._base = self._next
        if not self._done:
            more = list(islice(self._source, LOOKAHEAD - len(self._ids)))
            self._done = len(self._ids) + len(more) < LOOKAHEAD
            self._ids += more
            self._lens += [_UNASKED] * len(more)
        # built in one pass, last to first, so that an id seen twice maps to its first index
        self._where = dict(zip(reversed(self._ids), range(len(self._ids) - 1, -1, -1)))

    def peek(self) -> tuple[bytes, int | None, bool] | None:
        """(id, length, whether it is the last chunk) of the next previous chunk, or None."""
        k = self._next - self._base
        if k >= len(self._ids):
            return None
        if self._lens[k] is _UNASKED:
            stop = min(k + LENGTH_BATCH, len(self._ids))
            self._lens[k:stop] = self._lengths(self._ids[k:stop])
        return self._ids[k], self._lens[k], self._done and k == len(self._ids) - 1

    def pop(self) -> None:
        self._next += 1
        if self._next - self._base > LOOKAHEAD // 2 and not self._done:
            self._slide()

    def skip_past(self, blob_id: bytes) -> bool:
        """Position after the next previous chunk with this id, if the window holds one."""
        k = self._where.get(blob_id)
        if k is None:
            return False
        if self._base + k < self._next:  # seen before the position: is it also after it?
            try:
                k = self._ids.index(blob_id, self._next - self._base)
            except ValueError:
                return False
        self._next = self._base + k
        self.pop()
        return True


class _Buffer:
    """The stream through a fixed buffer: ``view[:end]`` holds bytes not yet fed to the content
    digest; everything before ``pos`` has been yielded."""

    def __init__(self, stream: BinaryIO, buffer: bytearray, prefix: bytes, digest: Any) -> None:
        self.stream, self.buf, self.digest = stream, buffer, digest
        self.view = memoryview(buffer)
        self.end = len(prefix)
        self.view[:self.end] = prefix
        self.eof = False
        self.pos = 0

    def fill(self) -> int:
        """Drop the yielded bytes (feeding them to the digest), read until the buffer is full or
        the stream ends; return by how much offsets moved down."""
        shift = self.pos
        if shift:
            if self.digest is not None:
                self.digest.update(self.view[:shift])
            self.view[:self.end - shift] = self.view[shift:self.end]
            self.end -= shift
            self.pos = 0
        size = len(self.buf)
        while self.end < size and not self.eof:
            n = self.stream.readinto(self.view[self.end:])
            if n:
                self.end += n
            else:
                self.eof = True
        return shift

    def finish(self) -> None:
        if self.digest is not None and self.pos:
            self.digest.update(self.view[:self.pos])


def guided_chunk_views(
    stream: BinaryIO, params: ChunkerParams, previous: PreviousChunks, blob_id: Callable[[memoryview], bytes], *,
    buffer: bytearray | None = None, prefix: bytes = b"", digest: Any = None, records: bool = False,
) -> Iterator[tuple[memoryview, bytes, bool]]:
    """The chunks ``chunker.chunk_views`` yields for the same arguments, as (view, id, reused):
    ``reused`` when the chunk was verified against a previous chunk instead of being cut (so it
    is in the index already). Each view is valid only until the next one is requested."""
    buf = buffer if buffer is not None else bytearray(buffer_size_for(params))
    if len(buf) < 2 * params.max_size:
        raise ValueError("chunk buffer must hold at least two maximum-size chunks")
    b = _Buffer(stream, buf, prefix, digest)
    prev = previous
    lo, hi = params.min_size, params.max_size
    # Matched but not yet confirmed previous chunks, contiguous from b.pos: (length, id, horizon).
    pending: deque[tuple[int, bytes, int]] = deque()
    matched_end = 0  # b.pos + the pending lengths
    verifying = True
    guiding = True  # False once checks failed too often: then FastCDC to the end
    matched = failed = 0
    b.fill()
    while True:
        if verifying:
            nxt = prev.peek()
            if nxt is None:  # the previous version ends here: confirmed if this one does too
                if matched_end == b.end and not b.eof:
                    shift = b.fill()
                    matched_end -= shift
                if b.eof and matched_end == b.end:
                    yield from _emit(b, pending, _NEVER * 2)
                    b.finish()
                    return
                verifying = False
                continue
            expected_id, length, last = nxt
            if length is None or length > hi or length < (1 if last else lo):
                verifying = False
                continue
            if matched_end + length > b.end and not b.eof:
                shift = b.fill()
                matched_end -= shift
            if matched_end + length > b.end:  # the stream ends first, or the buffer is full
                verifying = False
                continue
            chunk_id = blob_id(b.view[matched_end:matched_end + length])
            if chunk_id != expected_id:
                verifying = False
                failed += 1
                guiding = failed < GIVE_UP_AFTER or failed <= 2 * matched
                continue
            matched += 1
            prev.pop()
            if records:
                horizon = hi
            else:
                horizon = length if not last or length == hi else _NEVER
            pending.append((length, chunk_id, horizon))
            matched_end += length
            yield from _emit(b, pending, matched_end)
            continue

        # FastCDC from b.pos: whatever is pending could not be confirmed.
        pending.clear()
        if b.end - b.pos <= hi and not b.eof:
            b.fill()  # then at least one cut fits before the end of the buffer
        if b.pos == b.end and b.eof:
            b.finish()
            return
        for cut_start, cut_stop in chunk_cuts(buf, b.view, b.pos, b.end, b.eof, params, records):
            if cut_stop == b.end and not b.eof:
                break  # possibly cut short by the buffer: after the next fill
            chunk = b.view[cut_start:cut_stop]
            chunk_id = blob_id(chunk)
            yield chunk, chunk_id, False
            chunk.release()
            b.pos = cut_stop
            if guiding and prev.skip_past(chunk_id):
                verifying = True  # in step with the previous version again
                break
        matched_end = b.pos


def _emit(b: _Buffer, pending: deque[tuple[int, bytes, int]], upto: int) -> Iterator[tuple[memoryview, bytes, bool]]:
    """Yield the pending chunks whose cut is confirmed by matched bytes up to ``upto``."""
    while pending and b.pos + pending[0][2] <= upto:
        length, chunk_id, _ = pending.popleft()
        chunk = b.view[b.pos:b.pos + length]
        yield chunk, chunk_id, True
        chunk.release()
        b.pos += length
