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
    """Chunk sizes per content class; stored in the repository config."""

    text: ChunkerParams = ChunkerParams(4 * 1024, 16 * 1024, 64 * 1024)
    binary: ChunkerParams = ChunkerParams(256 * 1024, 1024 * 1024, 4 * 1024 * 1024)

    def for_class(self, content_class: str) -> ChunkerParams:
        return self.text if content_class == TEXT else self.binary

    def to_json(self) -> dict:
        return {"text": asdict(self.text), "binary": asdict(self.binary)}

    @classmethod
    def from_json(cls, doc: dict) -> ChunkingProfiles:
        return cls(ChunkerParams(**doc["text"]), ChunkerParams(**doc["binary"]))


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
    stream: BinaryIO, params: ChunkerParams, *, buffer: bytearray | None = None, prefix: bytes = b""
) -> Iterator[bytes]:
    """Yield the chunks of ``prefix`` followed by the rest of ``stream`` (which has ``readinto``)."""
    for view in chunk_views(stream, params, buffer=buffer, prefix=prefix):
        yield bytes(view)


def chunk_views(
    stream: BinaryIO, params: ChunkerParams, *, buffer: bytearray | None = None, prefix: bytes = b"",
    digest: Any = None,
) -> Iterator[memoryview]:
    """Like ``chunk_stream`` but without copying: each memoryview is valid only until the next
    one is requested (the buffer is then refilled). Copy what must outlive that.

    ``digest`` (an object with ``update``, e.g. a BLAKE3 hasher) is fed every byte yielded, in
    order, once per buffer rather than once per chunk."""
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
        for c in _fastcdc(data, params.min_size, params.avg_size, params.max_size):
            stop = c.offset + c.length
            if stop == end and not eof:
                break  # possibly cut short by the buffer: chunk it again after the next fill
            chunk = data[c.offset:stop]
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
