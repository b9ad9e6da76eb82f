"""zstd for blobs and sealed objects.

Blobs are compressed one by one; a blob is stored raw when compression does not shrink it by at
least 1/32 (already-compressed media, encrypted data). Decompression is capped at the length the
pack header records, so a hostile frame cannot expand into gigabytes.
"""

from __future__ import annotations

import threading

import zstandard

from strongroom.errors import IntegrityError

NONE = 0
ZSTD = 1

DEFAULT_LEVEL = 3

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstandard contexts are not thread-safe; keep one per thread and level.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    ctx = cache.get(level)
    if ctx is None:
        ctx = cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=False, write_checksum=False
        )
    return ctx


def _decompressor() -> zstandard.ZstdDecompressor:
    ctx = getattr(_local, "decompressor", None)
    if ctx is None:
        ctx = _local.decompressor = zstandard.ZstdDecompressor()
    return ctx


def compress_blob(data: bytes | memoryview, level: int = DEFAULT_LEVEL) -> tuple[int, bytes | memoryview]:
    """Return (compression code, payload)."""
    if level <= 0 or len(data) < 64:
        return NONE, data
    packed = _compressor(level).compress(data)
    if len(packed) > len(data) - (len(data) >> 5):
        return NONE, data
    return ZSTD, packed


def decompress_blob(code: int, payload: bytes, raw_length: int, what: str, dictionary: int = 0) -> bytes:
    if dictionary != 0:
        raise IntegrityError(f"{what}: compression dictionary {dictionary} is not supported in format v1")
    if code == NONE:
        if len(payload) != raw_length:
            raise IntegrityError(f"{what}: stored length {len(payload)} differs from recorded {raw_length}")
        return payload
    if code != ZSTD:
        raise IntegrityError(f"{what}: unknown compression {code}")
    return decompress_frame(payload, raw_length, what, exact=True)


def compress_frame(data: bytes) -> bytes:
    return _compressor(DEFAULT_LEVEL).compress(data)


def decompress_frame(data: bytes, limit: int, what: str, *, exact: bool = False) -> bytes:
    """Decompress one zstd frame into at most ``limit`` bytes (exactly ``limit`` if ``exact``)."""
    try:
        declared = zstandard.frame_content_size(data)
        if declared > limit:  # -1 means "not recorded"; then max_output_size caps the output
            raise IntegrityError(f"{what}: declares {declared} bytes, more than the allowed {limit}")
        out = _decompressor().decompress(data, max_output_size=limit, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise IntegrityError(f"{what}: cannot decompress ({e})") from None
    if exact and len(out) != limit:
        raise IntegrityError(f"{what}: decompressed to {len(out)} bytes, expected {limit}")
    return out
