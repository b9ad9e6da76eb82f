"""File trees readers work on: a directory, a zip archive, and a tree with its zips opened.

All three implement :class:`~strongroom.messages.model.ExportFiles`: sorted relative POSIX paths
of regular files, their sizes, and binary streams.  Nothing here follows symlinks out of the
tree or accepts a zip member name that escapes it."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tempfile
import zipfile
from collections import OrderedDict
from typing import BinaryIO, Callable, Iterable, Iterator

from ..model import ExportFiles
from .common import FORMAT_ERRORS, HEAD_BYTES, Warn, log_warning, read_up_to

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # local file header; empty archive's end record
#: Non-seekable zip streams are spooled to a temporary file; this much stays in memory.
SPOOL_MEMORY = 8 * 1024 * 1024
OPEN_ARCHIVES = 4


class LocalExportFiles:
    """A directory on disk.  Symlinks are not followed (a backup stores them as links)."""

    def __init__(self, root: str | bytes) -> None:
        self.root = os.fsdecode(root)
        self._sizes: dict[str, int] | None = None

    def _scan(self) -> dict[str, int]:
        if self._sizes is None:
            sizes: dict[str, int] = {}
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, self.root)
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    st = os.lstat(full)
                    if stat.S_ISREG(st.st_mode):
                        rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                        sizes[rel.replace(os.sep, "/")] = st.st_size
            self._sizes = dict(sorted(sizes.items()))
        return self._sizes

    def paths(self) -> Iterable[str]:
        return list(self._scan())

    def size(self, path: str) -> int:
        return self._scan()[path]

    def open(self, path: str) -> BinaryIO:
        if path not in self._scan():
            raise FileNotFoundError(path)
        return open(os.path.join(self.root, *path.split("/")), "rb")


def safe_member_name(name: str) -> str | None:
    """The member's path inside the tree, or None when it is a directory or escapes it."""
    n = name.replace("\\", "/")
    if not n or n.endswith("/") or n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        return None
    parts = n.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\x00" in n:
        return None
    return n


class ZipExportFiles:
    """A zip archive (a path or a seekable binary stream).  Members whose names escape the
    archive (``..``, absolute, drive letters) are left out with a warning; for a name stored
    twice, the last member wins (as unzip does)."""

    def __init__(self, source, warn: Warn | None = None) -> None:
        self._zip = zipfile.ZipFile(source)
        warn = warn or log_warning
        members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            name = safe_member_name(info.filename)
            if name is None:
                warn(f"zip member {info.filename!r} escapes the archive: ignored")
                continue
            members[name] = info
        self._members = dict(sorted(members.items()))

    def paths(self) -> Iterable[str]:
        return list(self._members)

    def size(self, path: str) -> int:
        return self._members[path].file_size

    def open(self, path: str) -> BinaryIO:
        return self._zip.open(self._members[path])  # type: ignore[return-value]

    def stored(self, path: str) -> tuple[int, int, int, Iterator[bytes]]:
        """(compression method, CRC-32, uncompressed size, the member's data as the archive stores
        it, compressed, in blocks): what identifies its content without inflating it."""
        info = self._members[path]
        fp = self._zip.fp  # member streams seek before each read, so seeking it here is safe
        if fp is None:
            raise ValueError("the zip archive is closed")
        fp.seek(info.header_offset)
        header = fp.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"{info.filename}: bad local file header")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        return info.compress_type, info.CRC, info.file_size, _stored_blocks(
            fp, info.header_offset + len(header) + name_length + extra_length, info.compress_size, info.filename)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> ZipExportFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip local file header, up to the name


def _stored_blocks(fp, start: int, length: int, name: str) -> Iterator[bytes]:
    position, left = start, length
    while left > 0:
        fp.seek(position)
        block = fp.read(min(left, 1 << 20))
        if not block:
            raise zipfile.BadZipFile(f"{name}: the archive ends inside the member")
        position += len(block)
        left -= len(block)
        yield block


class ExpandedFiles:
    """``files`` with every zip archive (recognised by its magic bytes, one level deep) also
    shown as a directory of its members: ``a/export.zip`` → ``a/export.zip/channels.json``…
    The archive file itself stays listed.  Archives that cannot be opened are left as files
    with a warning.  Up to ``OPEN_ARCHIVES`` archives are held open (least recently used is
    closed first, so keep at most that many member streams of different archives open at
    once); a non-seekable archive stream is spooled to a temporary file.  ``close()`` them."""

    def __init__(self, files: ExportFiles, warn: Warn | None = None) -> None:
        self.inner = files
        self.warn = warn or log_warning
        self._listing: dict[str, tuple[str | None, str]] | None = None  # path → (zip, member)
        self._open: OrderedDict[str, tuple[ZipExportFiles, BinaryIO]] = OrderedDict()

    def _zip(self, zpath: str) -> ZipExportFiles:
        held = self._open.get(zpath)
        if held is not None:
            self._open.move_to_end(zpath)
            return held[0]
        stream = self.inner.open(zpath)
        try:
            if not _seekable(stream):
                spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY)
                shutil.copyfileobj(stream, spool, 1 << 20)
                stream.close()
                stream = spool  # type: ignore[assignment]
                spool.seek(0)
            z = ZipExportFiles(stream, self.warn)
        except BaseException:
            stream.close()
            raise
        self._open[zpath] = (z, stream)
        if len(self._open) > OPEN_ARCHIVES:
            _, (old, old_stream) = self._open.popitem(last=False)
            old.close()
            old_stream.close()
        return z

    def _scan(self) -> dict[str, tuple[str | None, str]]:
        if self._listing is None:
            listing: dict[str, tuple[str | None, str]] = {}
            for p in self.inner.paths():
                listing[p] = (None, p)
                if not _looks_like_zip(self.inner, p):
                    continue
                try:
                    members = list(self._zip(p).paths())
                except FORMAT_ERRORS + (NotImplementedError,) as exc:
                    self.warn(f"{p}: not a readable zip archive, read as a plain file: {exc}")
                    continue
                for m in members:
                    listing[f"{p}/{m}"] = (p, m)
            self._listing = dict(sorted(listing.items()))
        return self._listing

    def paths(self) -> Iterable[str]:
        return list(self._scan())

    def size(self, path: str) -> int:
        zpath, member = self._scan()[path]
        return self.inner.size(member) if zpath is None else self._zip(zpath).size(member)

    def open(self, path: str) -> BinaryIO:
        zpath, member = self._scan()[path]
        return self.inner.open(member) if zpath is None else self._zip(zpath).open(member)

    def member_of(self, path: str) -> tuple[str, str] | None:
        """(the archive's path, the member's name in it) of a zip member; None for a plain file."""
        zpath, member = self._scan()[path]
        return None if zpath is None else (zpath, member)

    def local_head(self, path: str) -> bytes | None:
        """A plain file's head as ``files`` reads it without the repository; None for a member."""
        zpath, member = self._scan()[path]
        inner = getattr(self.inner, "local_head", None) if zpath is None else None
        return None if inner is None else inner(member)

    def head_verdict(self, path: str, key: str, compute: Callable[[], bool]) -> bool:
        """The plain files' verdicts as ``files`` remembers them; a member's is computed."""
        zpath, member = self._scan()[path]
        inner = getattr(self.inner, "head_verdict", None) if zpath is None else None
        return compute() if inner is None else inner(member, key, compute)

    def stored(self, path: str) -> tuple[int, int, int, Iterator[bytes]] | None:
        """ZipExportFiles.stored for a zip member; None for a plain file."""
        zpath, member = self._scan()[path]
        return None if zpath is None else self._zip(zpath).stored(member)

    def close(self) -> None:
        while self._open:
            _, (z, stream) = self._open.popitem()
            z.close()
            stream.close()

    def __enter__(self) -> ExpandedFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def expand_zips(files: ExportFiles, warn: Warn | None = None) -> ExpandedFiles:
    """``files`` with its zip archives opened as directories (see :class:`ExpandedFiles`)."""
    return ExpandedFiles(files, warn)


def _looks_like_zip(files: ExportFiles, path: str) -> bool:
    if not path.lower().endswith(".zip"):
        return False
    with files.open(path) as f:
        return read_up_to(f, 4) in ZIP_MAGIC


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError):
        return False


class HeadCache:
    """Wraps a tree for recognition: recently read first bytes are shared between readers.

    Bounded (``HEAD_CACHE_ENTRIES`` heads), so recognising a tree of a million files reads each
    candidate's head at most once per reader but never holds more than a few MB."""

    def __init__(self, files: ExportFiles, hidden: set[str] | None = None) -> None:
        self.inner = files
        self.hidden = hidden if hidden is not None else set()
        self._heads: OrderedDict[str, bytes] = OrderedDict()
        self._paths: list[str] | None = None

    def paths(self) -> Iterable[str]:
        if self._paths is None:
            self._paths = list(self.inner.paths())
        return [p for p in self._paths if p not in self.hidden] if self.hidden else self._paths

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def open(self, path: str) -> BinaryIO:
        return self.inner.open(path)

    def head_verdict(self, path: str, key: str, compute: Callable[[], bool]) -> bool:
        inner = getattr(self.inner, "head_verdict", None)
        return compute() if inner is None else inner(path, key, compute)

    def head(self, path: str) -> bytes:
        b = self._heads.get(path)
        if b is None:
            local = getattr(self.inner, "local_head", None)
            b = local(path) if local is not None else None
            if b is None:
                with self.inner.open(path) as f:
                    b = read_up_to(f, HEAD_BYTES)
            self._heads[path] = b
            if len(self._heads) > HEAD_CACHE_ENTRIES:
                self._heads.popitem(last=False)
        else:
            self._heads.move_to_end(path)
        return b


HEAD_CACHE_ENTRIES = 256
