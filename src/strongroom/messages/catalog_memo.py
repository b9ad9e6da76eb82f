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

import itertools
import marshal
from collections import Counter
from typing import Callable, Iterable, Iterator

import blake3

from strongroom.messages.catalog_format import encode_record, may_cut_after

MEMO_MAX_BYTES = 32 * 1024 * 1024  # pieces (bytes of the file) remembered per file
MAX_PIECE = 1024 * 1024  # a piece is cut here when no separator came (compact JSON, odd input)
SNIFF = 64 * 1024
_MEMO_VERSION = 7
_MAX_CLOSING_INDENT = 16
_SEPARATOR = ("separator",)  # a memo's entry for the file's separator (piece keys are 3-tuples)


def separator(head: bytes) -> bytes:
    """Where records of this file most likely end, from its first bytes: a newline for JSON
    lines, else the closing bracket (and comma) of the most frequent object-closing line of
    pretty-printed JSON (the shallowest of those nearly as frequent: an array element's own
    closing line, not a nested object's), else "}," (compact JSON). Only the memo's hit rate
    depends on this choice, never what is catalogued."""
    newlines = head.count(b"\n")
    if newlines >= 2 and (head.startswith(b"{") + head.count(b"\n{")) * 2 > newlines:
        return b"\n"
    # closing lines ("\n", k blanks, "},") by indentation k: looking back from each "}," costs a
    # third of the instructions of a regex over the 64 KiB (measured under callgrind)
    counts: Counter[int] = Counter()
    for before in head.split(b"},")[:-1]:
        line_start = before.rfind(b"\n") + 1
        if line_start and len(before) - line_start <= _MAX_CLOSING_INDENT and not before[line_start:].strip(b" "):
            counts[len(before) - line_start] += 1
    best = max(counts.values(), default=0)
    if best >= 2:
        k = min(k for k, n in counts.items() if n * 3 >= best * 2)
        return b"\n" + b" " * k + b"},"
    return b"},"


def pieces(blocks: Iterable[bytes], sep: bytes | None = None) -> Iterator[tuple[bytes, bool]]:
    """(piece, final) for the concatenated ``blocks``: each piece ends just after a separator
    (or at MAX_PIECE bytes); the last piece (possibly empty) has ``final`` set. The separator
    is sniffed from the first SNIFF bytes unless given."""
    for batch, last in piece_batches(blocks, sep):
        for piece in batch:
            yield piece, False
        if last is not None:
            yield last, True


def piece_batches(blocks: Iterable[bytes], sep: bytes | None = None, sniff: Callable[[bytes], bytes] = separator
                  ) -> Iterator[tuple[list[bytes], bytes | None]]:
    """``pieces`` a block at a time: (the block's non-final pieces, the final piece or None).
    One generator step per block and no tuple per piece: this runs for every record of every
    changed export file. ``sniff`` gives the separator of a file's first bytes."""
    buf = b""
    for block in blocks:
        buf = buf + block if buf else block
        if sep is None:
            if len(buf) < SNIFF:
                continue  # more to sniff from
            sep = sniff(buf[:SNIFF])
        batch, buf = _cut(buf, sep)
        if batch:
            yield batch, None
    batch, buf = _cut(buf, sep if sep is not None else sniff(buf))
    yield batch, buf


def _batched(cut: Iterable[tuple[bytes, bool]], size: int = 256) -> Iterator[tuple[list[bytes], bytes | None]]:
    """``piece_batches`` for pieces a reader cuts itself."""
    batch: list[bytes] = []
    for piece, final in cut:
        if final:
            yield batch, piece
            return
        batch.append(piece)
        if len(batch) >= size:
            yield batch, None
            batch = []
    if batch:
        yield batch, None


def _cut(buf: bytes, sep: bytes) -> tuple[list[bytes], bytes]:
    """The whole pieces ``buf`` holds (none longer than MAX_PIECE) and, while the rest is longer
    than MAX_PIECE, MAX_PIECE of it; and the rest."""
    *whole, rest = buf.split(sep)
    batch = [part + sep for part in whole]
    if any(len(piece) > MAX_PIECE for piece in batch):
        batch = [piece[i:i + MAX_PIECE] for piece in batch for i in range(0, len(piece), MAX_PIECE)]
    while len(rest) > MAX_PIECE:
        batch.append(rest[:MAX_PIECE])
        rest = rest[MAX_PIECE:]
    return batch, rest


def _escaped(raw: bytes) -> bytes:
    """UTF-8 with 0x00 and 0x01 escaped (0x01 0x01, 0x01 0x02), so that with 0x00 appended the
    bytewise order of the results is the code-point order of the strings (UTF-8 keeps it),
    prefixes first."""
    return raw.replace(b"\1", b"\1\2").replace(b"\0", b"\1\1")


def _int_key(value: int) -> bytes:
    """Bytes whose bytewise order is the integers' order: a sign byte, the magnitude's length in
    2 bytes, the magnitude (complemented for negatives), at least 8 bytes long when not negative
    (sortable_record writes those directly). Python's int parsing caps JSON numbers at 4,300
    digits, well within the 65,535 bytes the length allows."""
    if value >= 0:
        magnitude = value.to_bytes(max(8, (value.bit_length() + 7) // 8), "big")
        return b"\1" + len(magnitude).to_bytes(2, "big") + magnitude
    magnitude = (-value).to_bytes(((-value).bit_length() + 7) // 8, "big")
    return b"\0" + (0xFFFF - len(magnitude)).to_bytes(2, "big") + bytes(255 - b for b in magnitude)


_TIME_64 = b"\1\0\x08"  # _int_key's prefix for 0 <= time < 2**64


def sortable_record(conversation: str, time_ms: int, message_id: str, line: bytes, may_cut: bool) -> bytes:
    """One record as a memo keeps it and a part's sort orders it (spec §23.1: by conversation,
    time, id, then the line's bytes): a byte string whose bytewise order is that order, then the
    line's cut mark and the key's length. One bytes object per record, not a tuple of five:
    marshalled, loaded and sorted several times faster, and this runs for every record of every
    changed export file every night."""
    c = conversation.encode("utf-8", "surrogatepass")
    if b"\0" in c or b"\1" in c:
        c = _escaped(c)
    i = message_id.encode("utf-8", "surrogatepass")
    if b"\0" in i or b"\1" in i:
        i = _escaped(i)
    t = _TIME_64 + time_ms.to_bytes(8, "big") if 0 <= time_ms < 1 << 64 else _int_key(time_ms)
    return b"".join((c, b"\0", t, i, b"\0", line, b"\1" if may_cut else b"\0",
                     (len(c) + len(t) + len(i) + 2).to_bytes(4, "big")))


def record_line(record: bytes) -> tuple[bytes, bool]:
    """(the record line, whether a chunk may end after it) of a ``sortable_record``."""
    return record[int.from_bytes(record[-4:], "big"):-5], record[-5] == 1


class PieceMemo:
    """Record lines and next state per (state, piece) of one export file: the previous version's
    (read) and this version's (written, within MEMO_MAX_BYTES)."""

    def __init__(self, entries: dict | None = None) -> None:
        # (state, final, BLAKE3 of the piece) -> (records, next state, warnings), where a record
        # is a sortable_record
        self.previous = entries or {}
        self.current: dict[tuple[bytes, bool, bytes], tuple[tuple[bytes, ...], bytes, tuple[str, ...]]] = {}
        self._size = 0
        self.parsed = 0  # pieces parsed this time
        self.reused = 0  # pieces answered from the memo

    def read(self, reader, blocks: Iterable[bytes], warn: Callable[[str], None], cut_hash: Callable[[bytes], bytes]
             ) -> Iterator[list[bytes]]:
        """The records of the file in ``blocks``, a list per block of the file, in order, through
        ``reader`` (a segment reader) where the memo does not know a piece: ``sortable_record``s,
        which keep each line's ``may_cut_after``, so a reused record is neither encoded nor hashed
        again. The reader's warnings for a piece (a record skipped) are kept too and given again
        when it is reused: a bad record is reported by every backup that holds it, as when files
        are read whole."""
        state = reader.initial()
        previous, current = self.previous, self.current
        known, remembered = previous.get, current.get
        digest = blake3.blake3
        # a reader may cut its own pieces (a line format whose records start with a pattern)
        own = getattr(reader, "pieces", None)
        for batch, last in piece_batches(blocks, sniff=self._separator) if own is None else _batched(own(blocks)):
            out: list[bytes] = []
            for piece, final in itertools.chain(zip(batch, itertools.repeat(False)),
                                                ((last, True),) if last is not None else ()):
                key = (state, final, digest(piece).digest(16))
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
                    records = tuple(sortable_record(m.conversation, m.time_ms, m.message_id, line,
                                                    may_cut_after(line, cut_hash))
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

    def _separator(self, head: bytes) -> bytes:
        """``separator(head)``, remembered with a hash of ``head``: a file's first bytes rarely
        change from night to night, and hashing them costs a fraction of counting in them."""
        digest = blake3.blake3(head).digest(16)
        known = self.previous.get(_SEPARATOR)
        sep = known[1] if known is not None and known[0] == digest else separator(head)
        self.current[_SEPARATOR] = (digest, sep)
        return sep

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
