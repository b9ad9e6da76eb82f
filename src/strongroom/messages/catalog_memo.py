"""What makes cataloguing a changed export file cost what changed in it (spec §23.6).

A nightly full export changes a little in most of its files (new messages, edits, reactions,
a volatile header), so most files must be read again, but most of their *records* are the same
bytes as the night before. The file is fed to its reader's segment reader (§22.10) in pieces of
about one record each, cut after the file's record separator (below). By the segment reader's
contract, what a piece yields depends only on the reader state before it and its bytes, so the
result for (state, piece) is remembered — the record lines it gave and the state after it — and
the next version of the file answers every piece it still holds from that *memo*, parsing only
pieces it has not seen. Which pieces a file is cut into never changes what is catalogued: any
partition gives the same messages in the same order (§22.10). So the memo is a cache only.

A memo is one value per export file in the local messages cache (catalog_index.MemoTable),
sealed like all message data there, holding only the pieces of the file's latest version, and
at most ``MEMO_MAX_BYTES`` of them (a larger file has its other pieces parsed every time): memory
stays bounded whatever the file size.
"""

from __future__ import annotations

import marshal
import re
from collections import Counter
from typing import Callable, Iterable, Iterator

import blake3

from strongroom.messages.catalog_format import encode_record, may_cut_after

MEMO_MAX_BYTES = 32 * 1024 * 1024  # pieces (bytes of the file) remembered per file
MAX_PIECE = 1024 * 1024  # a piece is cut here when no separator came (compact JSON, odd input)
SNIFF = 64 * 1024
_MEMO_VERSION = 5
_CLOSING_LINE = re.compile(rb"\n( {0,16})\},")


def separator(head: bytes) -> bytes:
    """Where records of this file most likely end, from its first bytes: a newline for JSON
    lines, else the closing bracket (and comma) of the most frequent object-closing line of
    pretty-printed JSON (the shallowest of those nearly as frequent: an array element's own
    closing line, not a nested object's), else "}," (compact JSON). Only the memo's hit rate
    depends on this choice, never what is catalogued."""
    newlines = head.count(b"\n")
    if newlines >= 2 and (head.startswith(b"{") + head.count(b"\n{")) * 2 > newlines:
        return b"\n"
    counts = Counter(map(len, _CLOSING_LINE.findall(head)))
    best = max(counts.values(), default=0)
    if best >= 2:
        k = min(k for k, n in counts.items() if n * 3 >= best * 2)
        return b"\n" + b" " * k + b"},"
    return b"},"


def pieces(blocks: Iterable[bytes], sep: bytes | None = None) -> Iterator[tuple[bytes, bool]]:
    """(piece, final) for the concatenated ``blocks``: each piece ends just after a separator
    (or at MAX_PIECE bytes); the last piece (possibly empty) has ``final`` set. The separator
    is sniffed from the first SNIFF bytes unless given."""
    for batch in piece_batches(blocks, sep):
        yield from batch


def piece_batches(blocks: Iterable[bytes], sep: bytes | None = None) -> Iterator[list[tuple[bytes, bool]]]:
    """``pieces`` a list per block (one generator step per block, not per piece: this runs for
    every record of every changed export file)."""
    buf = b""
    for block in blocks:
        buf = buf + block if buf else block
        if sep is None:
            if len(buf) < SNIFF:
                continue  # more to sniff from
            sep = separator(buf[:SNIFF])
        batch, buf = _cut(buf, sep)
        if batch:
            yield batch
    batch, buf = _cut(buf, sep if sep is not None else separator(buf))
    batch.append((buf, True))
    yield batch


def _batched(cut: Iterable[tuple[bytes, bool]], size: int = 256) -> Iterator[list[tuple[bytes, bool]]]:
    """``piece_batches`` for pieces a reader cuts itself."""
    batch: list[tuple[bytes, bool]] = []
    for item in cut:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _cut(buf: bytes, sep: bytes) -> tuple[list[tuple[bytes, bool]], bytes]:
    """The whole pieces ``buf`` holds (none longer than MAX_PIECE) and, while the rest is longer
    than MAX_PIECE, MAX_PIECE of it; and the rest."""
    *whole, rest = buf.split(sep)
    batch = [(part + sep, False) for part in whole]
    if any(len(piece) > MAX_PIECE for piece, _ in batch):
        batch = [(piece[i:i + MAX_PIECE], False) for piece, _ in batch for i in range(0, len(piece), MAX_PIECE)]
    while len(rest) > MAX_PIECE:
        batch.append((rest[:MAX_PIECE], False))
        rest = rest[MAX_PIECE:]
    return batch, rest


class PieceMemo:
    """Record lines and next state per (state, piece) of one export file: the previous version's
    (read) and this version's (written, within MEMO_MAX_BYTES)."""

    def __init__(self, entries: dict | None = None) -> None:
        # (state, final, BLAKE3 of the piece) -> (records, next state, warnings), where a record is
        # (conversation, time, id, record line, may_cut_after): sortable as spec §23.1 sorts
        self.previous = entries or {}
        self.current: dict[tuple[bytes, bool, bytes], tuple[tuple[tuple, ...], bytes, tuple[str, ...]]] = {}
        self._size = 0
        self.parsed = 0  # pieces parsed this time
        self.reused = 0  # pieces answered from the memo

    def read(self, reader, blocks: Iterable[bytes], warn: Callable[[str], None], cut_hash: Callable[[bytes], bytes]
             ) -> Iterator[list[tuple]]:
        """The records of the file in ``blocks``, a list per block of the file, in order, through
        ``reader`` (a segment reader) where the memo does not know a piece: (conversation, time,
        id, record line, ``may_cut_after`` of the line) — kept, so a reused record is neither
        encoded nor hashed again. The reader's warnings for a piece (a record skipped) are kept
        too and given again when it is reused: a bad record is reported by every backup that
        holds it, as when files are read whole."""
        state = reader.initial()
        previous, current = self.previous, self.current
        known, remembered = previous.get, current.get
        # a reader may cut its own pieces (a line format whose records start with a pattern)
        own = getattr(reader, "pieces", None)
        for batch in piece_batches(blocks) if own is None else _batched(own(blocks)):
            out: list[tuple] = []
            for piece, final in batch:
                key = (state, final, blake3.blake3(piece).digest(16))
                hit = known(key) or remembered(key)
                if hit is not None:
                    self.reused += 1
                    records, state, warnings = hit
                    for message in warnings:
                        warn(message)
                else:
                    self.parsed += 1
                    said: list[str] = []
                    messages, state = reader.feed(state, piece, final, said.append)
                    for message in said:
                        warn(message)
                    records = tuple((m.conversation, m.time_ms, m.message_id, line, may_cut_after(line, cut_hash))
                                    for m, line in ((m, encode_record(m)) for m in messages))
                    hit = (records, state, tuple(said))
                if self._size < MEMO_MAX_BYTES and key not in current:
                    current[key] = hit
                    # a record line is shorter than its piece of (pretty-printed) JSON: the pieces'
                    # size bounds the memo's, cheaply
                    self._size += 64 + len(state) + len(piece)
                if records:
                    out.extend(records)
            yield out

    def encode(self) -> bytes:
        """This version's entries (what the next version can reuse)."""
        return bytes([_MEMO_VERSION]) + marshal.dumps(self.current)

    @classmethod
    def decode(cls, data: bytes) -> PieceMemo:
        """A memo from ``encode``; an unreadable one (another Python's marshal, another version)
        is an empty memo: the file is parsed again, nothing else changes."""
        if not data or data[0] != _MEMO_VERSION:
            return cls()
        try:
            entries = marshal.loads(data[1:])
        except (ValueError, EOFError, TypeError):
            return cls()
        return cls(entries if isinstance(entries, dict) else None)
