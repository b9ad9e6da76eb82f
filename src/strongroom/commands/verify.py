"""Restore verification: read a restored file back from disk and compare it, chunk by chunk,
with the keyed hashes the snapshot records (``restore --verify``).

The file is read in the snapshot's own chunk boundaries (each chunk's length comes from the
index), so memory is one chunk at a time and a mismatch names the first bad byte range.
"""

from __future__ import annotations

import hashlib
import os

from strongroom.errors import IntegrityError
from strongroom.repository import Repository
from strongroom.tree import Node


def verify_file(repo: Repository, path: bytes, node: Node) -> int:
    """Check that the file at ``path`` holds exactly the content of ``node``; return its size.
    Raises IntegrityError describing the first difference."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            offset = 0
            for blob_id in repo.file_chunks(node):
                length = repo.locate(blob_id).entry.raw_length
                data = _read_exactly(f, length)
                if len(data) != length:
                    raise IntegrityError(f"verify: file is shorter than the snapshot says "
                                         f"({offset + len(data)} bytes)")
                if repo.master.blob_id(data) != blob_id:
                    raise IntegrityError(f"verify: bytes {offset}..{offset + length} differ from the snapshot")
                offset += length
            if f.read(1):
                raise IntegrityError(f"verify: file is longer than the snapshot's {offset} bytes")
            return offset
    finally:
        os.close(fd)


def verify_archive(path: bytes | str, info) -> None:
    """Check a restored archive file against the SHA-256 recorded at backup (identical ones only:
    an equivalent archive was checked on its tar stream as it was rebuilt)."""
    if info.fidelity != "identical":
        return
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        while data := os.read(fd, 1 << 20):
            digest.update(data)
    finally:
        os.close(fd)
    if digest.digest() != info.sha256:
        raise IntegrityError("verify: the restored archive differs from the original (SHA-256)")


def _read_exactly(f, length: int) -> bytes:
    parts = []
    left = length
    while left:
        part = f.read(min(left, 1 << 20))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
