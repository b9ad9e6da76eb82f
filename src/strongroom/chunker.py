"""Content-defined chunking of streams with FastCDC (the fastcdc package's compiled chunker).

fastcdc chunks an in-memory buffer, so a stream is read into a fixed buffer; a chunk that ends
exactly at the end of a not-yet-final buffer may have been cut short by the buffer and is carried
into the next fill. The cut points are therefore the same as chunking the whole stream at once,
and memory stays at one buffer whatever the file size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Iterator

from fastcdc import fastcdc as _fastcdc

TEXT = "text"
BINARY = "binary"

SNIFF_SIZE = 8192

# Formats that are already compressed or opaque: recognised by their leading bytes.
_BINARY_MAGIC = (
    b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c", b"Rar!", b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"%PDF",
    b"OggS", b"fLaC", b"ID3", b"\x1a\x45\xdf\xa3", b"SQLite format 3",
)


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int
    avg_size: int
    max_size: int

    def __post_init__(self) -> None:
        if not (64 <= self.min_size <= self.avg_size <= self.max_size) or self.avg_size < 256 or self.max_size < 1024:
            raise ValueError(f"invalid chunker sizes {self.min_size}/{self.avg_size}/{self.max_size}")


@dataclass(frozen=True)
class ChunkingProfiles:
    """Chunk sizes per content class, and whether text chunks end at record boundaries (spec
    §7.4); stored in the repository config."""

    text: ChunkerParams = ChunkerParams(4 * 1024, 16 * 1024, 64 * 1024)
    binary: ChunkerParams = ChunkerParams(256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
    records: bool = False

    def for_class(self, content_class: str) -> ChunkerParams:
        return self.text if content_class == TEXT else self.binary

    def distinct(self) -> bool:
        """Whether no chunk length is possible in both profiles (except a file's last chunk)."""
        return self.text.max_size < self.binary.min_size or self.binary.max_size < self.text.min_size

    def to_json(self) -> dict:
        doc = {"text": asdict(self.text), "binary": asdict(self.binary)}
        if self.records:  # absent when off: configs of repositories without it stay as they were
            doc["records"] = True
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> ChunkingProfiles:
        records = doc.get("records", False)
        if type(records) is not bool:
            raise ValueError("chunking.records must be true or false")
        return cls(ChunkerParams(**doc["text"]), ChunkerParams(**doc["binary"]), records)


def classify(head: bytes | memoryview) -> str:
    """TEXT or BINARY, from the first bytes of the content only (so it is deterministic)."""
    head = bytes(head[:SNIFF_SIZE])
    if not head:
        return TEXT
    if head.startswith(_BINARY_MAGIC) or b"\0" in head:
        return BINARY
    try:
        head.decode("utf-8")
        return TEXT
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the sniff window is still text.
        if e.start >= len(head) - 3 and e.reason == "unexpected end of data":
            return TEXT
    printable = sum(1 for b in head if b >= 32 or b in (9, 10, 13))
    return TEXT if printable * 100 >= len(head) * 95 else BINARY


def buffer_size_for(params: ChunkerParams) -> int:
    return max(8 * 1024 * 1024, 2 * params.max_size)


def chunk_stream(
    stream: BinaryIO, params: ChunkerParams, *, buffer: bytearray | None = None, prefix: bytes = b"",
    records: bool = False,
) -> Iterator[bytes]:
    """Yield the chunks of ``prefix`` followed by the rest of ``stream`` (which has ``readinto``)."""
    for view in chunk_views(stream, params, buffer=buffer, prefix=prefix, records=records):
        yield bytes(view)


def chunk_views(
    stream: BinaryIO, params: ChunkerParams, *, buffer: bytearray | None = None, prefix: bytes = b"",
    digest: Any = None, records: bool = False,
) -> Iterator[memoryview]:
    """Like ``chunk_stream`` but without copying: each memoryview is valid only until the next
    one is requested (the buffer is then refilled). Copy what must outlive that.

    ``digest`` (an object with ``update``, e.g. a BLAKE3 hasher) is fed every byte yielded, in
    order, once per buffer rather than once per chunk. ``records``: move each cut back to the last
    record boundary the chunk holds (spec §7.4)."""
    buf = buffer if buffer is not None else bytearray(buffer_size_for(params))
    size = len(buf)
    if size < 2 * params.max_size:
        raise ValueError("chunk buffer must hold at least two maximum-size chunks")
    view = memoryview(buf)
    end = len(prefix)
    view[:end] = prefix
    eof = False
    while True:
        while end < size and not eof:
            n = stream.readinto(view[end:])
            if not n:
                eof = True
            else:
                end += n
        if end == 0:
            return
        data = view[:end]
        consumed = 0
        for start, stop in chunk_cuts(buf, data, 0, end, eof, params, records):
            if stop == end and not eof:
                break  # possibly cut short by the buffer: chunk it again after the next fill
            chunk = data[start:stop]
            yield chunk
            chunk.release()
            consumed = stop
        if digest is not None and consumed:
            digest.update(data[:consumed])
        data.release()
        if eof and consumed == end:
            return
        view[: end - consumed] = view[consumed:end]
        end -= consumed


def chunk_cuts(buf: bytearray, data: memoryview, start: int, end: int, eof: bool, params: ChunkerParams,
               records: bool) -> Iterator[tuple[int, int]]:
    """(start, stop) of the successive chunks of ``buf[start:end]`` (``data`` is a view of
    ``buf``), lazily. The last one may be cut short by ``end`` unless ``eof``: callers drop it."""
    if records:
        return _record_cuts(buf, data, start, end, eof, params)
    return ((start + c.offset, start + c.offset + c.length) for c in
            _fastcdc(data[start:end], params.min_size, params.avg_size, params.max_size))


# -- record boundaries (spec §7.4) ------------------------------------------------------------------

RECORD_MAX_INDENT = 16
# A line that opens a JSON object, by its indentation: "\n{", "\n {", ... (JSONL records and the
# elements of pretty-printed JSON arrays), tried shallowest first.
_RECORD_OPENERS = tuple(b"\n" + b" " * k + b"{" for k in range(RECORD_MAX_INDENT + 1))


def record_cut(data: bytes | bytearray, start: int, cut: int, min_size: int) -> int:
    """Move the FastCDC cut ``cut`` of the chunk beginning at ``start`` back to the chunk's last
    record boundary at or after ``start + min_size``: the start of the last line that opens a JSON
    object with the smallest indentation, else the start of the last line; else keep ``cut``."""
    low = start + min_size
    if cut <= low:
        return cut
    for opener in _RECORD_OPENERS:
        i = data.rfind(opener, low - 1, cut)
        if i >= 0:
            return i + 1
    i = data.rfind(b"\n", low - 1, cut)
    return i + 1 if i >= 0 else cut


def _record_cuts(buf: bytearray, data: memoryview, start: int, end: int, eof: bool, params: ChunkerParams
                 ) -> Iterator[tuple[int, int]]:
    """(start, stop) of successive record-aligned chunks of ``buf[start:end]``. Each cut needs
    ``max_size`` bytes after its start (or the end of the stream), as §7.3 requires."""
    lo, avg, hi = params.min_size, params.avg_size, params.max_size
    while start < end:
        limit = min(end, start + hi)
        if limit < start + hi and not eof:
            return  # too few bytes buffered to place this cut: after the next fill
        window = data[start:limit]
        first = next(iter(_fastcdc(window, lo, avg, hi)))
        window.release()
        stop = record_cut(buf, start, start + first.length, lo)
        yield start, stop
        start = stop
