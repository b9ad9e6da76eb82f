"""Streams the archive scanners read from: each one bounded, hashed or checked as it goes.

Nothing here holds more than one read's worth of data (plus a compressor's small lag in
ReencodeCheck): a member is never in memory whole, and decompression is bounded by the bytes
it actually produces, not by what headers claim.
"""

from __future__ import annotations

import hashlib
import os
import zlib

import zstandard

from strongroom.archives.reencode import ZLIB_LEVELS, ZSTD_LEVELS, ReencodeCheck, raw_deflate

READ_SIZE = 256 * 1024


class NotExpandable(Exception):
    """This file cannot be stored member-wise; the message says why (it is stored plain)."""


class FileSource:
    """The archive file read front to back once, hashing every byte (the SHA-256 in the node)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.pos = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int) -> bytes:
        data = os.pread(self.fd, min(n, self.size - self.pos), self.pos) if n > 0 and self.pos < self.size else b""
        self.pos += len(data)
        self.sha256.update(data)
        return data

    def read_exactly(self, n: int, what: str) -> bytes:
        parts, left = [], n
        while left:
            part = self.read(min(left, READ_SIZE))
            if not part:
                raise NotExpandable(f"truncated {what}")
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def finish(self) -> None:
        if os.pread(self.fd, 1, self.size):
            raise NotExpandable("the file grew while it was read")


class Bounded:
    """Exactly ``length`` bytes of another source, as a readable stream (readinto for the chunker)."""

    def __init__(self, src, length: int, what: str) -> None:
        self.src, self.left, self.what = src, length, what
        self.crc = 0

    def read(self, n: int) -> bytes:
        if not self.left or n <= 0:
            return b""
        data = self.src.read(min(n, self.left, READ_SIZE))
        if not data:
            raise NotExpandable(f"truncated {self.what}")
        self.left -= len(data)
        self.crc = zlib.crc32(data, self.crc)
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)


class Budget:
    """The expanded bytes one archive may produce (zip bombs: claimed sizes are not trusted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise NotExpandable(f"expands to more than {self.limit} bytes (a decompression bomb?)")


class _ReadFromReadinto:
    def read(self, n: int = READ_SIZE) -> bytes:
        buf = bytearray(n if n is not None and n >= 0 else READ_SIZE)
        return bytes(buf[:self.readinto(buf)])


class InflateReader(_ReadFromReadinto):
    """A zip member's raw deflate stream, decompressed: checks the claimed size and CRC-32 at the
    end and feeds ``check`` so the caller learns whether zlib re-creates the compressed bytes."""

    def __init__(self, compressed: Bounded, size: int, crc: int, budget: Budget, check: ReencodeCheck | None,
                 what: str) -> None:
        self.src, self.size, self.crc, self.budget, self.check, self.what = compressed, size, crc, budget, check, what
        self._d = zlib.decompressobj(-15)
        self._pending = b""
        self.out = 0
        self._crc = 0

    def readinto(self, buf) -> int:
        want = len(buf)
        while True:
            if self._d.eof:
                self._end()
                return 0
            if not self._pending:
                piece = self.src.read(READ_SIZE)
                if not piece:
                    raise NotExpandable(f"{self.what}: deflate stream is truncated")
                if self.check is not None:
                    self.check.original(piece)
                self._pending = piece
            try:
                data = self._d.decompress(self._pending, want)
            except zlib.error as e:
                raise NotExpandable(f"{self.what}: bad deflate data ({e})") from None
            self._pending = self._d.unconsumed_tail
            if data:
                self.out += len(data)
                if self.out > self.size:
                    raise NotExpandable(f"{self.what}: larger than the {self.size} bytes its header claims")
                self.budget.spend(len(data))
                self._crc = zlib.crc32(data, self._crc)
                if self.check is not None:
                    self.check.decoded(data)
                buf[:len(data)] = data
                return len(data)

    def _end(self) -> None:
        if self._d.unused_data or self._pending or self.src.left:
            raise NotExpandable(f"{self.what}: bytes after the end of its deflate stream")
        if self.out != self.size:
            raise NotExpandable(f"{self.what}: {self.out} bytes, but its header claims {self.size}")
        if self._crc != self.crc:
            raise NotExpandable(f"{self.what}: CRC-32 mismatch")


class StoredReader(Bounded):
    """A stored (uncompressed) zip member: checks its CRC-32 at the end."""

    def __init__(self, src, size: int, crc: int, budget: Budget, what: str) -> None:
        super().__init__(src, size, what)
        self.expected, self.budget = crc, budget

    def read(self, n: int) -> bytes:
        data = super().read(n)
        self.budget.spend(len(data))
        if not data and self.crc != self.expected:
            raise NotExpandable(f"{self.what}: CRC-32 mismatch")
        return data


class _Tap:
    """The compressed file as read by a decompressor: every byte hashed and shown to ``check``."""

    def __init__(self, src: FileSource, check: ReencodeCheck) -> None:
        self.src, self.check = src, check

    def read(self, n: int = READ_SIZE) -> bytes:
        data = self.src.read(n if n and n > 0 else READ_SIZE)
        self.check.original(data)
        return data


class TarStream:
    """The decompressed tar bytes of a tar.gz or tar.zst, hashed (tar_sha256) and budgeted."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.sha256 = hashlib.sha256()
        self.crc = 0
        self.size = 0
        self.check: ReencodeCheck

    def _got(self, data: bytes) -> bytes:
        self.size += len(data)
        self.budget.spend(len(data))
        self.sha256.update(data)
        self.crc = zlib.crc32(data, self.crc)
        self.check.decoded(data)
        return data


def parse_gzip_header(src: FileSource) -> bytes:
    """The gzip member header, verbatim (RFC 1952); at most 64 KiB of optional fields."""
    head = src.read_exactly(10, "gzip header")
    if head[:3] != b"\x1f\x8b\x08" or head[3] & 0xE0:
        raise NotExpandable("not a deflate gzip stream")
    flags, out = head[3], bytearray(head)
    if flags & 4:  # FEXTRA
        xlen = src.read_exactly(2, "gzip header")
        out += xlen + src.read_exactly(int.from_bytes(xlen, "little"), "gzip header")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            while True:
                b = src.read_exactly(1, "gzip header")
                out += b
                if b == b"\0":
                    break
                if len(out) > 65536:
                    raise NotExpandable("gzip header longer than 64 KiB")
    if flags & 2:  # FHCRC
        out += src.read_exactly(2, "gzip header")
    return bytes(out)


class GzipTar(TarStream):
    def __init__(self, src: FileSource, budget: Budget, first_level: int | None = None) -> None:
        super().__init__(budget)
        self.src = src
        self.header = parse_gzip_header(src)
        xfl = self.header[8]
        hint = 9 if xfl == 2 else 1 if xfl == 4 else first_level
        self.check = ReencodeCheck(raw_deflate, ZLIB_LEVELS, hint)
        self._d = zlib.decompressobj(-15)
        self._pending = b""
        self.trailer = b""

    def read(self, n: int) -> bytes:
        while not self._d.eof:
            if not self._pending:
                piece = self.src.read(READ_SIZE)
                if not piece:
                    raise NotExpandable("truncated gzip stream")
                self.check.original(piece)
                self._pending = piece
            try:
                data = self._d.decompress(self._pending, min(n, READ_SIZE))
            except zlib.error as e:
                raise NotExpandable(f"bad gzip data ({e})") from None
            self._pending = self._d.unconsumed_tail
            if data:
                return self._got(data)
        if not self.trailer:
            self._finish()
        return b""

    def _finish(self) -> None:
        rest = self._d.unused_data
        tail = rest
        while len(tail) < 9:  # the 8-byte trailer, and one more byte if the file goes on
            more = self.src.read(9 - len(tail))
            if not more:
                break
            tail += more
        if len(tail) < 8:
            raise NotExpandable("truncated gzip trailer")
        if len(tail) > 8 or self.src.pos != self.src.size:
            raise NotExpandable("data after the first gzip member (several members are not supported)")
        self.trailer = tail
        crc, isize = int.from_bytes(tail[:4], "little"), int.from_bytes(tail[4:], "little")
        if crc != self.crc or isize != self.size & 0xFFFFFFFF:
            raise NotExpandable("gzip CRC-32 or length mismatch")
        self.check.drop_tail(len(rest))  # the trailer bytes the check saw are not deflate output


class ZstdTar(TarStream):
    def __init__(self, src: FileSource, budget: Budget) -> None:
        super().__init__(budget)
        head = os.pread(src.fd, 18, 0)
        if len(head) < 6 or head[:4] != b"\x28\xb5\x2f\xfd":
            raise NotExpandable("not a zstd frame")
        fhd = head[4]
        if fhd & 3:
            raise NotExpandable("zstd frame needs a dictionary")
        self.checksum = bool(fhd & 4)
        params = zstandard.get_frame_parameters(head)
        self.pledged = params.content_size if params.content_size != zstandard.CONTENTSIZE_UNKNOWN else -1
        self.content_size = self.pledged >= 0

        def make(level: int):
            c = zstandard.ZstdCompressor(level=level, write_checksum=self.checksum,
                                         write_content_size=self.content_size)
            return c.compressobj(size=self.pledged)

        self.check = ReencodeCheck(make, ZSTD_LEVELS)
        self.src = src
        self._reader = zstandard.ZstdDecompressor().stream_reader(_Tap(src, self.check), read_size=READ_SIZE,
                                                                  read_across_frames=True)

    def read(self, n: int) -> bytes:
        try:
            data = self._reader.read(min(n, READ_SIZE))
        except zstandard.ZstdError as e:
            raise NotExpandable(f"bad zstd data ({e})") from None
        if data:
            return self._got(data)
        if self.src.pos != self.src.size:
            raise NotExpandable("data after the zstd frames")
        if self.content_size and self.size != self.pledged:
            raise NotExpandable(f"zstd frame claims {self.pledged} bytes but holds {self.size}")
        return b""
