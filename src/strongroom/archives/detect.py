"""Recognising an archive by its first bytes (never by its name)."""

from __future__ import annotations

import io
import os
import zlib

import zstandard

from strongroom.archives.tarscan import BLOCK, is_tar_header

ZIP, TAR, TAR_GZ, TAR_ZST = "zip", "tar", "tar.gz", "tar.zst"
_PEEK = 64 * 1024


def detect(fd: int) -> str | None:
    """The archive format of the open file, or None for anything else (stored plain, silently)."""
    head = os.pread(fd, _PEEK, 0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    if head[:3] == b"\x1f\x8b\x08":
        try:
            inner = zlib.decompressobj(31).decompress(head, BLOCK)
        except zlib.error:
            return None
        return TAR_GZ if is_tar_header(inner) else None
    if head[:4] == b"\x28\xb5\x2f\xfd":
        try:
            inner = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(head)).read(BLOCK)
        except zstandard.ZstdError:
            return None
        return TAR_ZST if is_tar_header(inner) else None
    return TAR if is_tar_header(head) else None
