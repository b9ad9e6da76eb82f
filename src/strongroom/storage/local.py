"""A repository in a local directory; objects are files, ``/`` in a name is a subfolder."""

from __future__ import annotations

import errno
import os
import secrets
import stat as stat_mod
import time
from collections.abc import Iterator
from pathlib import Path

from strongroom.errors import (
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
    StorageError,
    StorageFull,
)
from strongroom.storage.base import (
    CONFIG,
    FOLDERS,
    TEMP_INFIX,
    Data,
    Storage,
    data_folders,
    is_init_leftover,
    validate_name,
    validate_range,
)

FILE_MODE = 0o600
DIR_MODE = 0o700

_NOT_FOUND = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
_FULL = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_HAS_PREAD = hasattr(os, "pread")  # not on Windows: loads fall back to a file object there
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or create in ``path`` durable; a no-op where folders cannot be fsynced."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):  # e.g. Windows: no handle on folders
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class LocalStorage(Storage):
    """Objects as files below ``path`` (mode 0600, folders 0700), written atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path).expanduser().absolute()
        self.url = str(self.root)

    # -- helpers ----------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *validate_name(name).split("/"))

    def _error(self, exc: OSError, name: str, action: str, path: str | None = None) -> StorageError:
        """Map an OSError raised while doing ``action`` on object ``name`` to our tree."""
        where = path or exc.filename or self._path(name)
        if exc.errno in _NOT_FOUND and action != "write":
            return ObjectNotFound(f"object {name} not found in {self.url}")
        if exc.errno == errno.ENOSPC:
            return StorageFull(f"no space left on device while writing {name} ({where})")
        if exc.errno in _FULL:
            return StorageFull(f"disk quota exceeded while writing {name} ({where})")
        reason = exc.strerror or str(exc)
        return StorageError(f"cannot {action} {name}: {reason} ({where})")

    def _mkdirs(self, folder: str) -> None:
        """Create the missing folders of ``folder`` (a name or "") with mode 0700, durably."""
        if not self.root.is_dir():
            raise RepositoryNotFound(f"no repository at {self.url}")
        parent = str(self.root)
        for part in folder.split("/") if folder else ():
            path = os.path.join(parent, part)
            try:
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                pass
            else:
                fsync_dir(parent)
            parent = path

    # -- protocol ---------------------------------------------------------------------

    def create(self) -> None:
        root = self.root
        try:
            if (root / CONFIG).exists():
                raise RepositoryExists(f"a repository already exists at {self.url}")
            if root.exists():
                if not root.is_dir():
                    raise StorageError(f"cannot create repository: {self.url} is not a folder")
                for _ in self._init_leftovers():  # first look everywhere: refuse before removing anything
                    pass
                for path in self._init_leftovers():
                    os.unlink(path)
            else:
                root.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(root, DIR_MODE)
            for folder in (*FOLDERS, *data_folders()):
                try:
                    os.mkdir(os.path.join(root, *folder.split("/")), DIR_MODE)
                except FileExistsError:  # made by an interrupted init
                    pass
            for folder in ("keys", "data", "."):
                fsync_dir(root / folder)
            fsync_dir(root.parent)
        except OSError as exc:
            if exc.errno in _FULL:
                raise StorageFull(f"no space left on device while creating {self.url}") from exc
            reason = exc.strerror or str(exc)
            raise StorageError(f"cannot create repository at {self.url}: {reason}") from exc

    def _init_leftovers(self) -> Iterator[str]:
        """Yield the paths of the files an interrupted init left below the root (key files and
        temporaries); raise RepositoryExists at the first entry that is anything else. Streams."""
        folders = set(FOLDERS)
        data_subfolders = {name.rsplit("/", 1)[1] for name in data_folders()}
        pending = [("", str(self.root))]
        while pending:
            prefix, folder = pending.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = f"{prefix}{entry.name}"
                    if entry.is_dir(follow_symlinks=False) and (
                            (not prefix and entry.name in folders) or (prefix == "data/" and entry.name in data_subfolders)):
                        pending.append((f"{name}/", entry.path))
                    elif entry.is_file(follow_symlinks=False) and is_init_leftover(name):
                        yield entry.path
                    else:
                        raise RepositoryExists(f"cannot create repository: {self.url} is not empty "
                                               f"(it holds {name!r} and no config)")

    def exists(self) -> bool:
        return (self.root / CONFIG).is_file()

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        validate_range(offset, length)
        if _HAS_PREAD:
            return self._pread(name, path, offset, length)
        try:
            with open(path, "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except OSError as exc:
            raise self._error(exc, name, "read", path) from exc

    def _pread(self, name: str, path: str, offset: int, length: int | None) -> bytes:
        """One positioned read into a buffer of the right size: no file object, no seek, and no
        copy through a read buffer (restore reads thousands of ranges of a few MiB)."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            raise self._error(exc, name, "read", path) from exc
        try:
            if length is None:
                length = max(os.fstat(fd).st_size - offset, 0)
            data = os.pread(fd, length, offset)
            if 0 < len(data) < length:  # a short read before the end (rare): read the rest
                parts = [data]
                got = len(data)
                while got < length and (more := os.pread(fd, length - got, offset + got)):
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data
        except OSError as exc:  # e.g. EISDIR: a folder where an object should be
            raise self._error(exc, name, "read", path) from exc
        finally:
            os.close(fd)

    def store(self, name: str, data: Data) -> None:
        path = self._path(name)
        folder, base = os.path.split(path)
        tmp = os.path.join(folder, f"{base}{TEMP_INFIX}{secrets.token_hex(8)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            try:
                fd = os.open(tmp, flags, FILE_MODE)
            except FileNotFoundError:  # folder missing (e.g. a new subfolder): make it
                self._mkdirs(name.rpartition("/")[0])
                fd = os.open(tmp, flags, FILE_MODE)
        except OSError as exc:
            raise self._error(exc, name, "write", path) from exc
        try:
            try:
                view = memoryview(data).cast("B")
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise self._error(exc, name, "write", path) from exc
            raise
        try:
            fsync_dir(folder)
        except OSError as exc:
            raise self._error(exc, name, "write", folder) from exc

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.EPERM) and os.path.isdir(path):
                raise ObjectNotFound(f"object {name} not found in {self.url}") from exc
            raise self._error(exc, name, "delete", path) from exc

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        return self._walk(self._path(prefix), prefix)  # validates prefix eagerly

    def _walk(self, folder: str, prefix: str) -> Iterator[tuple[str, int]]:
        try:
            entries = os.scandir(folder)
        except OSError as exc:
            if exc.errno in _NOT_FOUND:
                return
            raise self._error(exc, prefix, "list", folder) from exc
        with entries:
            for entry in entries:
                name = f"{prefix}/{entry.name}"
                try:
                    if entry.is_dir(follow_symlinks=False):
                        yield from self._walk(entry.path, name)
                    elif TEMP_INFIX not in entry.name and entry.is_file(follow_symlinks=False):
                        yield name, entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # deleted while we were listing
                    continue
                except OSError as exc:
                    raise self._error(exc, name, "list", entry.path) from exc

    def sweep_temporaries(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for folder, _subfolders, files in os.walk(self.root):
            for base in files:
                if TEMP_INFIX not in base:
                    continue
                path = os.path.join(folder, base)
                try:
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:  # finished or swept by someone else meanwhile
                    continue
                except OSError as exc:
                    raise self._error(exc, os.path.relpath(path, self.root), "delete", path) from exc
        return removed

    def stat(self, name: str) -> int:
        path = self._path(name)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise self._error(exc, name, "stat", path) from exc
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"object {name} not found in {self.url}")
        return st.st_size
