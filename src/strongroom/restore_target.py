"""The only code that writes restored files to disk.

A snapshot tree is untrusted input: a malicious or damaged repository can hand us names such
as ``..`` or ``a/b``, and the target directory itself may already contain symlinks (planted or
left over from an earlier restore) such as ``a -> /etc``.  ``RestoreTarget`` makes it impossible
for either to cause a write outside the target directory:

* every name goes through :func:`check_name` (no ``""``, ``.``, ``..``, ``/`` or NUL);
* paths are never joined into strings and handed to path-based calls.  Each component is
  resolved one by one from an ``O_DIRECTORY`` fd on the root with ``dir_fd=`` and
  ``O_NOFOLLOW``; a symlink or a non-directory where a directory is needed raises
  :class:`~strongroom.errors.MaliciousTree` and is never followed;
* files are always created fresh (``O_CREAT | O_EXCL | O_NOFOLLOW``).  An existing
  non-directory entry at a file's or symlink's own name (regular file, symlink, FIFO, device,
  socket) is *unlinked and replaced*, never opened: so we never write through a symlink, never
  truncate an inode that is hard-linked from somewhere else, and never block on a FIFO or write
  to a device node.  An existing *directory* at that name is not removed:
  :class:`IsADirectoryError` is raised instead;
* metadata calls use ``follow_symlinks=False``; ``chmod`` is never applied to a symlink.

The root path given by the user is trusted and may itself be (or go through) a symlink.

Restore order: create directories, write their contents, then call :meth:`set_metadata` on
the directories last (deepest first), otherwise writing files changes the directory mtimes and
a read-only directory mode would block its own contents.

Directory fds are kept in an LRU cache keyed by the tuple of path components, so restoring many
files into one folder does not re-resolve the whole chain each time.  A cached fd stays bound to
the directory it was opened on, so swapping a directory for a symlink afterwards redirects
nothing.  Path operations are serialised by an internal lock (data writes in
:meth:`write_file` are not), so one instance may be shared between threads.

POSIX (Linux) only.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Union

from strongroom.errors import MaliciousTree, StrongroomError
from strongroom.names import check_name, show_name as _show

__all__ = ["DEFAULT_MAX_OPEN_DIRS", "RestoreTarget", "check_name"]

DEFAULT_MAX_OPEN_DIRS = 64
"""How many directory fds :class:`RestoreTarget` keeps open (besides the root's)."""

_WRITE_SIZE = 1 << 20
"""Small chunks are gathered into writes of about this size; larger chunks go out as they are."""

_MAX_IOV = min(os.sysconf("SC_IOV_MAX"), 512)
"""Most buffers handed to one writev."""

_REPLACE_ATTEMPTS = 8
"""How often we unlink-and-retry when something keeps reappearing at a name we create."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_EXCL makes O_TRUNC a no-op; it stays in for clarity: we never reuse an existing inode.
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_MODE = 0o700  # until set_metadata applies the real mode
_FILE_MODE = 0o600

Parts = Sequence[bytes]
PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Chunk = Union[bytes, bytearray, memoryview]


def _show_path(parts: Sequence[bytes]) -> str:
    return _show(b"/".join(parts))


def _check_parts(parts: Parts) -> tuple[bytes, ...]:
    if isinstance(parts, (bytes, bytearray, str)):
        raise TypeError("parts must be a sequence of bytes names, not a single string")
    key = tuple(parts)
    for name in key:
        check_name(name)
    return key


def _describe(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    return "not a directory"


def _write_all(fd: int, data: Chunk) -> None:
    """os.write until everything is out (handles short writes)."""
    with memoryview(data) as whole:
        view = whole if whole.format == "B" and whole.ndim == 1 else whole.cast("B")
        while view:
            n = os.write(fd, view)
            if n <= 0:  # cannot happen for regular files; never loop forever
                raise OSError(errno.EIO, "write made no progress")
            view = view[n:]


def _writev_all(fd: int, buffers: list[Chunk], total: int) -> None:
    """os.writev the buffers; a short write (rare for regular files) finishes with os.write."""
    if len(buffers) == 1:
        _write_all(fd, buffers[0])
        return
    n = os.writev(fd, buffers)
    if n == total:
        return
    for buf in buffers:
        size = memoryview(buf).nbytes
        if n >= size:
            n -= size
            continue
        _write_all(fd, memoryview(buf).cast("B")[n:] if n else buf)
        n = 0


class RestoreTarget:
    """A directory that restored files, directories and symlinks are written into.

    ``parts`` arguments are sequences of bytes names relative to the root; ``[]`` is the root.
    """

    def __init__(self, root: PathArg, *, max_open_dirs: int = DEFAULT_MAX_OPEN_DIRS) -> None:
        if max_open_dirs < 1:
            raise ValueError("max_open_dirs must be at least 1")
        root_b = os.fsencode(root)
        try:
            os.makedirs(root_b, mode=_DIR_MODE, exist_ok=True)
            self._root_fd = os.open(root_b, _ROOT_FLAGS)
        except OSError as e:  # a file on the way, a read-only or full file system, no permission
            raise StrongroomError(f"cannot restore to {os.fsdecode(root_b)}: {e.strerror}") from None
        self._root = root_b
        self._max_open_dirs = max_open_dirs
        self._dirs: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        self._lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ public API

    @property
    def root(self) -> bytes:
        return self._root

    @property
    def open_dir_count(self) -> int:
        """Number of cached directory fds (not counting the root's)."""
        return len(self._dirs)

    def make_dir(self, parts: Parts) -> None:
        """Create every missing directory along ``parts``; existing directories are fine.

        A component that exists but is a symlink or a non-directory raises MaliciousTree and is
        never followed or removed.  New directories get mode 0o700 until set_metadata.
        """
        key = _check_parts(parts)
        with self._lock:
            self._check_open()
            self._dir_fd(key, create=True)

    def open_file(self, parts: Parts) -> int:
        """Create the file ``parts`` and return a writable fd (the caller closes it).

        The parent directories must already exist.  The file is always a new inode with mode
        0o600: an existing symlink, file, FIFO, ... at that name is unlinked and replaced (never
        written through); an existing directory raises IsADirectoryError.
        """
        key = self._leaf_parts(parts, "open as a file")
        with self._lock:
            self._check_open()
            parent = self._dir_fd(key[:-1], create=False)
            for _ in range(_REPLACE_ATTEMPTS):
                try:
                    return os.open(key[-1], _FILE_FLAGS, _FILE_MODE, dir_fd=parent)
                except FileExistsError:
                    self._remove_non_dir(parent, key)
            raise FileExistsError(errno.EEXIST, "entry keeps reappearing", _show_path(key))

    def write_file(
        self,
        parts: Parts,
        chunks: Iterable[Chunk],
        *,
        size_hint: int | None = None,
    ) -> int:
        """Create the file ``parts``, write all ``chunks`` and return the number of bytes written.

        Small chunks are gathered into ~1 MiB writes (writev).  ``size_hint`` (the expected size) is
        used to preallocate space, which also reports a full disk early; the final size is
        always the number of bytes written.  The fd is closed in every case, and on any
        exception (from the chunks iterable or from writing) the partial file is removed.
        """
        key = self._leaf_parts(parts, "open as a file")
        fd = self.open_file(key)
        try:
            ident = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            try:
                written = self._write_chunks(fd, chunks, size_hint)
            finally:
                os.close(fd)
        except BaseException:
            self._discard(key, ident)
            raise
        return written

    def symlink(self, parts: Parts, target: bytes) -> None:
        """Create the symlink ``parts`` -> ``target``.

        ``target`` is stored verbatim and may point anywhere: this class never follows
        symlinks.  An existing non-directory at that name is replaced; an existing directory
        raises IsADirectoryError.
        """
        key = self._leaf_parts(parts, "replace with a symlink")
        if not isinstance(target, bytes):
            raise TypeError(f"symlink targets must be bytes, not {type(target).__name__}")
        if not target or b"\0" in target:
            raise MaliciousTree(f"invalid symlink target {_show(target)} for {_show_path(key)}")
        with self._lock:
            self._check_open()
            parent = self._dir_fd(key[:-1], create=False)
            for _ in range(_REPLACE_ATTEMPTS):
                try:
                    os.symlink(target, key[-1], dir_fd=parent)
                    return
                except FileExistsError:
                    self._remove_non_dir(parent, key)
            raise FileExistsError(errno.EEXIST, "entry keeps reappearing", _show_path(key))

    def set_metadata(
        self,
        parts: Parts,
        *,
        mode: int | None,
        mtime_ns: int | None,
        atime_ns: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        is_symlink: bool = False,
    ) -> None:
        """Apply ownership, permissions and times to ``parts`` (``[]`` is the root itself).

        ``None`` leaves a value unchanged.  Ownership is only changed when running as root,
        and EPERM/EINVAL from chown (root squash, unmapped ids in a user namespace) are ignored.
        ``mode`` is reduced to its permission bits and never applied to a symlink.  Nothing is
        ever applied through a symlink: the entry's type must match ``is_symlink``, otherwise
        MaliciousTree is raised.  Order: chown, chmod (chown may clear set-id bits), utime.
        """
        key = _check_parts(parts)
        with self._lock:
            self._check_open()
            if not key:
                if is_symlink:
                    raise ValueError("the restore root is not a symlink")
                self._set_root_metadata(mode, mtime_ns, atime_ns, uid, gid)
                return
            parent = self._dir_fd(key[:-1], create=False)
            name = key[-1]
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) != is_symlink:
                expected = "a symlink" if is_symlink else "not a symlink"
                raise MaliciousTree(
                    f"refusing to set metadata on {_show_path(key)}: expected {expected}, "
                    f"found {_describe(st)}"
                )
            if (uid is not None or gid is not None) and os.geteuid() == 0:
                try:
                    os.chown(
                        name,
                        -1 if uid is None else uid,
                        -1 if gid is None else gid,
                        dir_fd=parent,
                        follow_symlinks=False,
                    )
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.EINVAL):
                        raise
            if mode is not None and not is_symlink:
                self._chmod_nofollow(parent, key, stat.S_IMODE(mode))
            times = _times(st, atime_ns, mtime_ns)
            if times is not None:
                os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)

    def close(self) -> None:
        """Close every cached directory fd and the root fd.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dirs, self._dirs = self._dirs, OrderedDict()
            try:
                for fd in dirs.values():
                    os.close(fd)
            finally:
                os.close(self._root_fd)

    def __enter__(self) -> RestoreTarget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("RestoreTarget is closed")

    @staticmethod
    def _leaf_parts(parts: Parts, what: str) -> tuple[bytes, ...]:
        key = _check_parts(parts)
        if not key:
            raise MaliciousTree(f"refusing to {what} the restore root itself")
        return key

    def _dir_fd(self, key: tuple[bytes, ...], *, create: bool) -> int:
        """The fd of directory ``key``, resolved component by component (lock held).

        The returned fd belongs to the cache: use it before the next cache insertion.
        """
        if not key:
            return self._root_fd
        cached = self._dirs.get(key)
        if cached is not None:
            self._dirs.move_to_end(key)
            return cached
        # Start from the longest prefix we still have open.
        start = len(key) - 1
        while start > 0 and key[:start] not in self._dirs:
            start -= 1
        if start:
            fd = self._dirs[key[:start]]
            self._dirs.move_to_end(key[:start])
        else:
            fd = self._root_fd
        for i in range(start, len(key)):
            # The parent fd is used before _remember can evict (and close) it.
            fd = self._open_subdir(fd, key[: i + 1], create=create)
            self._remember(key[: i + 1], fd)
        return fd

    def _open_subdir(self, parent: int, key: tuple[bytes, ...], *, create: bool) -> int:
        name = key[-1]
        if create:
            try:
                # mkdirat never follows a symlink at the final component (EEXIST instead).
                os.mkdir(name, _DIR_MODE, dir_fd=parent)
            except FileExistsError:
                pass
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        try:
            found = _describe(os.stat(name, dir_fd=parent, follow_symlinks=False))
        except OSError:
            found = "not a directory"
        if found == "a symlink":
            msg = f"refusing to follow symlink {_show_path(key)} in the restore target"
        else:
            msg = f"refusing to use {_show_path(key)} as a directory: it is {found}"
        raise MaliciousTree(msg)

    def _remember(self, key: tuple[bytes, ...], fd: int) -> None:
        self._dirs[key] = fd
        while len(self._dirs) > self._max_open_dirs:
            _, old = self._dirs.popitem(last=False)
            os.close(old)

    @staticmethod
    def _remove_non_dir(parent: int, key: tuple[bytes, ...]) -> None:
        """Unlink whatever non-directory sits at ``key`` so that we can create it afresh."""
        name = key[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(
                errno.EISDIR,
                "refusing to replace an existing directory",
                _show_path(key),
            )
        try:
            os.unlink(name, dir_fd=parent)  # unlinkat without AT_REMOVEDIR: never a directory
        except FileNotFoundError:
            pass

    @staticmethod
    def _write_chunks(fd: int, chunks: Iterable[Chunk], size_hint: int | None) -> int:
        preallocated = 0
        if size_hint is not None and size_hint >= _WRITE_SIZE:
            try:
                os.posix_fallocate(fd, 0, size_hint)
                preallocated = size_hint
            except OSError as e:  # ENOSPC / EFBIG propagate: the file cannot fit
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
        written = 0
        # Small chunks are gathered (not copied: a fresh coalescing buffer per MiB costs page
        # faults) and go out with one writev per ~1 MiB.
        pending: list[Chunk] = []
        pending_bytes = 0
        for chunk in chunks:
            n = memoryview(chunk).nbytes
            if not n:
                continue
            pending.append(chunk)
            pending_bytes += n
            written += n
            if pending_bytes >= _WRITE_SIZE or len(pending) >= _MAX_IOV:
                _writev_all(fd, pending, pending_bytes)
                pending = []
                pending_bytes = 0
        if pending:
            _writev_all(fd, pending, pending_bytes)
        if preallocated > written:
            os.ftruncate(fd, written)
        return written

    def _discard(self, key: tuple[bytes, ...], ident: os.stat_result) -> None:
        """Best effort: unlink the partial file ``key`` if it is still the inode we created."""
        try:
            with self._lock:
                if self._closed:
                    return
                parent = self._dir_fd(key[:-1], create=False)
                st = os.stat(key[-1], dir_fd=parent, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == (ident.st_dev, ident.st_ino):
                    os.unlink(key[-1], dir_fd=parent)
        except Exception:  # never mask the original error
            pass

    @staticmethod
    def _chmod_nofollow(parent: int, key: tuple[bytes, ...], mode: int) -> None:
        name = key[-1]
        try:
            # fchmodat(AT_SYMLINK_NOFOLLOW): glibc >= 2.32 does this for non-symlinks.
            os.chmod(name, mode, dir_fd=parent, follow_symlinks=False)
            return
        except (NotImplementedError, ValueError):
            pass  # older libc, or the entry is (now) a symlink: decide below
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
        # Pin the inode with O_PATH (does not follow, needs no permissions), check it, and
        # chmod it through its /proc magic link, which refers to exactly that inode.
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise MaliciousTree(f"refusing to chmod through symlink {_show_path(key)}")
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)

    def _set_root_metadata(
        self,
        mode: int | None,
        mtime_ns: int | None,
        atime_ns: int | None,
        uid: int | None,
        gid: int | None,
    ) -> None:
        fd = self._root_fd
        st = os.fstat(fd)
        if (uid is not None or gid is not None) and os.geteuid() == 0:
            try:
                os.chown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EINVAL):
                    raise
        if mode is not None:
            os.chmod(fd, stat.S_IMODE(mode))
        times = _times(st, atime_ns, mtime_ns)
        if times is not None:
            os.utime(fd, ns=times)


def _times(st: os.stat_result, atime_ns: int | None, mtime_ns: int | None) -> tuple[int, int] | None:
    if atime_ns is None and mtime_ns is None:
        return None
    return (
        st.st_atime_ns if atime_ns is None else atime_ns,
        st.st_mtime_ns if mtime_ns is None else mtime_ns,
    )
