"""Export files read back from the source files a backup has just stored (spec §23.6): cheaper
than decrypting them from the repository, and used only while their bytes are still the ones
stored, as the snapshot's content hashes (spec §12) say. A reader that finds otherwise raises
SourceChanged, and the caller reads the repository's copy instead."""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from typing import BinaryIO, Iterator

from strongroom.messages.catalog_parallel import LocalSource
from strongroom.messages.formats.files import ZipExportFiles
from strongroom.writer import content_hasher


class SourceChanged(Exception):
    """A source file read for the catalogue is no longer what the snapshot stored."""


def open_regular(path: str, size: int) -> int | None:
    """A descriptor of ``path`` if it is a regular file of ``size`` bytes, else None."""
    try:  # non-blocking: a FIFO put in the file's place must not hang the backup
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        os.close(fd)
        return None
    return fd


def small_source_head(path: str, size: int, content_hash: bytes) -> bytes | None:
    """The whole content of a source file of at most HEAD_BYTES (so its head, for recognition),
    if it is still a regular file of ``size`` bytes whose BLAKE3 is ``content_hash``; else None."""
    fd = open_regular(path, size)
    if fd is None:
        return None
    try:
        return b"".join(verified_blocks(fd, size, content_hash))
    except SourceChanged:
        return None


def _identity(fd: int) -> tuple[int, ...]:
    """What changes when a file is written to or replaced under its descriptor (the change time
    cannot be set back)."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class LocalArchive:
    """A zip archive's source file, hashed whole when opened and found to be the snapshot's
    bytes, then trusted while its identity stays the same; read by one process only."""

    def __init__(self, fd: int, identity: tuple[int, ...], stream: BinaryIO, files: ZipExportFiles) -> None:
        self.fd, self.identity, self.stream, self.files = fd, identity, stream, files
        self.pid = os.getpid()

    @classmethod
    def open(cls, local: LocalSource) -> LocalArchive | None:
        fd = open_regular(local.path, local.size)
        if fd is None:
            return None
        stream = None
        try:
            identity = _identity(fd)
            digest, offset = content_hasher(), 0
            while block := os.pread(fd, 1 << 20, offset):
                digest.update(block)
                offset += len(block)
            if offset != local.size or digest.digest() != local.content_hash or _identity(fd) != identity:
                raise SourceChanged()
            stream = open(fd, "rb", closefd=False)
            return cls(fd, identity, stream, ZipExportFiles(stream, lambda message: None))  # (said when listed)
        except (SourceChanged, OSError, zipfile.BadZipFile, ValueError):
            if stream is not None:
                stream.close()
            os.close(fd)
            return None

    def usable(self) -> bool:
        try:
            return self.pid == os.getpid() and _identity(self.fd) == self.identity
        except OSError:
            return False

    def blocks(self, member: str) -> Iterator[bytes]:
        """The member's bytes; SourceChanged after the last block if the archive changed."""
        try:
            with self.files.open(member) as f:
                while block := f.read(1 << 20):
                    yield block
            changed = _identity(self.fd) != self.identity
        except (OSError, EOFError, KeyError, ValueError, NotImplementedError, zipfile.BadZipFile, zlib.error):
            changed = True  # (the repository's copy, read instead, reports a real fault)
        if changed:
            raise SourceChanged()

    def close(self) -> None:
        if self.pid == os.getpid():
            self.files.close()
            self.stream.close()
            os.close(self.fd)


def verified_blocks(fd: int, size: int, content_hash: bytes) -> Iterator[bytes]:
    """The file's blocks; SourceChanged after the last one unless they are ``size`` bytes whose
    BLAKE3 is ``content_hash`` (the node's, spec §12). Closes ``fd``."""
    digest = content_hasher()
    total = 0
    try:
        while block := os.read(fd, 1 << 20):
            digest.update(block)
            total += len(block)
            yield block
    except OSError:
        raise SourceChanged() from None
    finally:
        os.close(fd)
    if total != size or digest.digest() != content_hash:
        raise SourceChanged()
