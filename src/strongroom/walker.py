"""Reading the filesystem for a backup: directory listings, metadata, and file nodes.

Knows nothing of the repository: it turns os.stat results into tree nodes."""

from __future__ import annotations

import grp
import os
import pwd
import stat as stat_mod
from functools import lru_cache
from typing import Callable

from strongroom.tree import DIR, FILE, SYMLINK, Node


def _printable(name: str) -> str:
    # Account names are informational; a non-UTF-8 one is stored with replacement characters.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return _printable(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return ""


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return _printable(grp.getgrgid(gid).gr_name)
    except KeyError:
        return ""


def node_from_stat(name: bytes, st: os.stat_result) -> Node | None:
    """A node with the metadata of ``st``; None for sockets, fifos and devices."""
    if stat_mod.S_ISREG(st.st_mode):
        kind, size = FILE, st.st_size
    elif stat_mod.S_ISDIR(st.st_mode):
        kind, size = DIR, 0
    elif stat_mod.S_ISLNK(st.st_mode):
        kind, size = SYMLINK, 0
    else:
        return None
    return Node(name=name, type=kind, mode=stat_mod.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, size=size, inode=st.st_ino, device=st.st_dev,
                user=user_name(st.st_uid), group=group_name(st.st_gid))


def describe_special(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat_mod.S_ISSOCK(mode):
        return "socket"
    if stat_mod.S_ISFIFO(mode):
        return "fifo"
    if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
        return "device"
    return "special file"


def list_dir(path: bytes) -> list[tuple[bytes, os.stat_result | OSError]]:
    """Entries of a directory sorted by name bytes, each with its lstat result or the error."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                out.append((entry.name, entry.stat(follow_symlinks=False)))
            except OSError as e:
                out.append((entry.name, e))
    out.sort(key=lambda item: item[0])
    return out


def total_size(paths: list[bytes], skip: Callable[[bytes], bool]) -> int:
    """Bytes in the regular files below ``paths`` (not following symlinks), for progress ETAs."""
    total, pending = 0, list(paths)
    while pending:
        path = pending.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat_mod.S_ISREG(st.st_mode):
            total += st.st_size
        elif stat_mod.S_ISDIR(st.st_mode):
            try:
                names = os.listdir(path)
            except OSError:
                continue
            pending += [child for child in (os.path.join(path, n) for n in names) if not skip(child)]
    return total


def open_for_reading(path: bytes) -> int:
    """An fd for reading a file without updating its atime where allowed."""
    flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:
            pass  # O_NOATIME needs ownership of the file
    return os.open(path, flags)
