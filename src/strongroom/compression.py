"""zstd for blobs and sealed objects.

Blobs are compressed one by one; a blob is stored raw when compression does not shrink it by at
least 1/32 (already-compressed media, encrypted data). Small text blobs may be compressed with a
repository dictionary (strongroom.dictionary); the blob's entry then records the dictionary id. Decompression is capped at the length the
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


def _dict_compressor(level: int, dict_id: int, zdict: zstandard.ZstdCompressionDict) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "dict_compressors", None)
    if cache is None:
        cache = _local.dict_compressors = {}
    held = cache.get((level, dict_id))
    if held is None or held[0] is not zdict:  # the same id in another repository is another dictionary
        if len(cache) >= 8:
            cache.clear()
        # The id is in the blob's entry, so the frame does not repeat it.
        held = cache[(level, dict_id)] = (zdict, zstandard.ZstdCompressor(
            level=level, dict_data=zdict, write_content_size=False, write_checksum=False, write_dict_id=False))
    return held[1]


def _dict_decompressor(dict_id: int, zdict: zstandard.ZstdCompressionDict) -> zstandard.ZstdDecompressor:
    cache = getattr(_local, "dict_decompressors", None)
    if cache is None:
        cache = _local.dict_decompressors = {}
    held = cache.get(dict_id)
    if held is None or held[0] is not zdict:
        if len(cache) >= 8:
            cache.clear()
        held = cache[dict_id] = (zdict, zstandard.ZstdDecompressor(dict_data=zdict))
    return held[1]


def compress_blob_with(data: bytes | memoryview, level: int, dict_id: int,
                       zdict: zstandard.ZstdCompressionDict | None) -> tuple[int, int, bytes | memoryview]:
    """Return (compression code, dictionary id, payload); without a dictionary like ``compress_blob``.
    The dictionary id is 0 whenever the blob is stored raw."""
    if zdict is None or dict_id == 0 or level <= 0 or len(data) < 64:
        code, payload = compress_blob(data, level)
        return code, 0, payload
    packed = _dict_compressor(level, dict_id, zdict).compress(data)
    if len(packed) > len(data) - (len(data) >> 5):
        return NONE, 0, data
    return ZSTD, dict_id, packed


def decompress_blob(code: int, payload: bytes, raw_length: int, what: str, dictionary: int = 0,
                    dictionaries=None) -> bytes:
    """Decode a blob's payload. ``dictionaries`` maps a non-zero dictionary id to its
    ZstdCompressionDict (raising IntegrityError when it cannot); without it, such blobs are refused."""
    if dictionary != 0:
        if code != ZSTD:
            raise IntegrityError(f"{what}: dictionary {dictionary} recorded for an uncompressed blob")
        if dictionaries is None:
            raise IntegrityError(f"{what}: compression dictionary {dictionary} cannot be read here")
        out = _decompress_with(payload, raw_length, what, dictionary, dictionaries(dictionary))
        return out
    if code == NONE:
        if len(payload) != raw_length:
            raise IntegrityError(f"{what}: stored length {len(payload)} differs from recorded {raw_length}")
        return payload
    if code != ZSTD:
        raise IntegrityError(f"{what}: unknown compression {code}")
    return decompress_frame(payload, raw_length, what, exact=True)


def _decompress_with(data: bytes, limit: int, what: str, dict_id: int, zdict) -> bytes:
    try:
        declared = zstandard.frame_content_size(data)
        if declared > limit:
            raise IntegrityError(f"{what}: declares {declared} bytes, more than the allowed {limit}")
        out = _dict_decompressor(dict_id, zdict).decompress(data, max_output_size=limit, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise IntegrityError(f"{what}: cannot decompress with dictionary {dict_id:08x} ({e})") from None
    if len(out) != limit:
        raise IntegrityError(f"{what}: decompressed to {len(out)} bytes, expected {limit}")
    return out


def compress_frame(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    return _compressor(level).compress(data)


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
