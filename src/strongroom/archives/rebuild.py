"""Restore side: the original archive file, rebuilt from an archive node as a byte stream.

The stream is the layout's segments in order (skeleton bytes, member chunks re-deflated where
the layout says so), wrapped in the outer gzip or zstd stream for tar.gz / tar.zst. Each
member's CRC-32 (zip) and size are checked as it goes, and at the end the SHA-256 of the result
is compared with the one recorded at backup: for an "identical" archive the whole file's, for
an "equivalent" one the inner tar stream's. A mismatch raises IntegrityError (for instance, if
this machine's zlib deflates differently from the one that proved the archive at backup).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Iterable, Iterator

import zstandard

from strongroom.archives.format import EQUIVALENT, IDENTICAL, ArchiveInfo, Gap, MemberData, decode_layout
from strongroom.archives.reencode import raw_deflate
from strongroom.errors import IntegrityError
from strongroom.tree import decode_chunk_list

DEFAULT_GZIP_LEVEL = 6
DEFAULT_ZSTD_LEVEL = 3


def chunk_ids(repo, content: list[bytes], content_lists: list[bytes]) -> Iterator[bytes]:
    yield from content
    for list_id in content_lists:
        yield from decode_chunk_list(repo.load_blob(list_id), f"chunk list {list_id.hex()[:16]}")


def segments(repo, info: ArchiveInfo) -> Iterator[Gap | MemberData]:
    for layout_id in info.layout:
        yield from decode_layout(repo.load_blob(layout_id), f"archive layout {layout_id.hex()[:16]}")


class _Skeleton:
    """The skeleton's bytes, handed out in order, n at a time."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def take(self, n: int) -> Iterator[bytes]:
        while n:
            if not self._current:
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise IntegrityError("archive skeleton is shorter than its layout says")
                self._current = memoryview(chunk)
            part = self._current[:n]
            self._current = self._current[len(part):]
            n -= len(part)
            yield bytes(part)

    def at_end(self) -> bool:
        return not self._current and next(self._chunks, None) is None


def _inner(repo, fetcher, info: ArchiveInfo, what: str) -> Iterator[bytes]:
    """The zip file, or the tar stream inside a tar.gz / tar.zst."""
    skeleton = _Skeleton(fetcher.fetch_all(chunk_ids(repo, info.skeleton, info.skeleton_lists)))
    for seg in segments(repo, info):
        if isinstance(seg, Gap):
            yield from skeleton.take(seg.size)
            continue
        deflater = raw_deflate(seg.deflate) if seg.deflate is not None else None
        crc = size = 0
        for chunk in fetcher.fetch_all(chunk_ids(repo, seg.content, seg.content_lists)):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            yield deflater.compress(chunk) if deflater is not None else chunk
        if deflater is not None:
            yield deflater.flush()
        if size != seg.size or (seg.crc32 is not None and crc != seg.crc32):
            raise IntegrityError(f"{what}: a member's size or CRC-32 does not match the archive's")
    if not skeleton.at_end():
        raise IntegrityError(f"{what}: archive skeleton is longer than its layout says")


def inner_size(repo, info: ArchiveInfo) -> int:
    return info.skeleton_size + sum(s.size for s in segments(repo, info) if isinstance(s, MemberData))


def rebuild(repo, fetcher, info: ArchiveInfo, what: str) -> Iterator[bytes]:
    """Yield the archive's bytes; raise IntegrityError at the end if they are not what was promised."""
    whole, tar = hashlib.sha256(), hashlib.sha256()

    def hashed(parts: Iterable[bytes], h) -> Iterator[bytes]:
        for p in parts:
            if p:
                h.update(p)
                yield p

    inner = _inner(repo, fetcher, info, what)
    outer = info.outer
    if outer is None:
        yield from hashed(inner, whole)
    elif outer.codec == "gzip":
        yield from hashed(_gzip(hashed(inner, tar), outer), whole)
    else:
        yield from hashed(_zstd(hashed(inner, tar), outer, inner_size(repo, info)), whole)
    if info.fidelity == IDENTICAL and whole.digest() != info.sha256:
        raise IntegrityError(f"{what}: the rebuilt archive differs from the original (SHA-256 mismatch; was it "
                             f"compressed by a different zlib or zstd version? `restore --expand` gives the members)")
    if info.fidelity == EQUIVALENT and tar.digest() != info.tar_sha256:
        raise IntegrityError(f"{what}: the rebuilt tar stream differs from the original (SHA-256 mismatch)")


def _gzip(tar: Iterator[bytes], outer) -> Iterator[bytes]:
    yield outer.header
    deflater = raw_deflate(outer.level if outer.level is not None else DEFAULT_GZIP_LEVEL)
    crc = size = 0
    for part in tar:
        crc = zlib.crc32(part, crc)
        size += len(part)
        yield deflater.compress(part)
    yield deflater.flush()
    trailer = crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
    if trailer != outer.trailer:
        raise IntegrityError("the rebuilt tar stream's CRC-32 differs from the gzip trailer's")
    yield trailer


def _zstd(tar: Iterator[bytes], outer, size: int) -> Iterator[bytes]:
    level = outer.level if outer.level is not None else DEFAULT_ZSTD_LEVEL
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=outer.checksum,
                                          write_content_size=outer.content_size)
    c = compressor.compressobj(size=size if outer.content_size else -1)
    for part in tar:
        yield c.compress(part)
    yield c.flush()
