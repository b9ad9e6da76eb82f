"""Repeatable damage to repository objects, for corruption tests and drills.

Every function works on a file of a local repository and needs no key: the regions of a pack
(blob data, header, envelope, trailer) are found from its plaintext trailer.

    regions = pack_regions(path)            # {"blobs": (0, data_end), "header": ..., "envelope": ..., "trailer": ...}
    for offset in spread(*regions["header"], count=8):
        flip_byte(path, offset)             # ... run check, restore ...
        flip_byte(path, offset)             # flipping again restores the original byte
"""

from __future__ import annotations

import os
from pathlib import Path

from strongroom.pack import TRAILER

OBJECT_KINDS = ("pack", "index", "snapshot", "key", "config")


def flip_byte(path: str | os.PathLike, offset: int, mask: int = 0x01) -> None:
    """XOR one byte in place (a negative offset counts from the end)."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        pos = offset if offset >= 0 else size + offset
        if not 0 <= pos < size:
            raise ValueError(f"offset {offset} outside {path} ({size} bytes)")
        f.seek(pos)
        byte = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([byte ^ mask]))


def truncate(path: str | os.PathLike, size: int) -> None:
    """Cut the file to ``size`` bytes (a negative size removes that many from the end)."""
    length = os.path.getsize(path)
    os.truncate(path, size if size >= 0 else max(0, length + size))


def pack_regions(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Byte ranges [start, end) of a pack's parts, read from its (unencrypted) trailer."""
    data_size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(data_size - TRAILER.size)
        env_len, header_len, _, _ = TRAILER.unpack(f.read(TRAILER.size))
    trailer = data_size - TRAILER.size
    envelope = trailer - env_len
    header = envelope - header_len
    return {"blobs": (0, header), "header": (header, envelope), "envelope": (envelope, trailer),
            "trailer": (trailer, data_size)}


def spread(start: int, end: int, count: int) -> list[int]:
    """``count`` offsets spread evenly over [start, end), always including both ends."""
    if end <= start:
        return []
    if count <= 1 or end - start == 1:
        return [start]
    step = (end - 1 - start) / (count - 1)
    return sorted({start + round(i * step) for i in range(count)})


def objects(repo_path: str | os.PathLike, kind: str) -> list[Path]:
    """The stored files of one object kind, sorted by name (temporary files skipped)."""
    root = Path(repo_path)
    folder = {"pack": "data", "index": "index", "snapshot": "snapshots", "key": "keys"}.get(kind)
    if kind == "config":
        return [root / "config"]
    if folder is None:
        raise ValueError(f"unknown object kind {kind!r}; one of {OBJECT_KINDS}")
    return sorted(p for p in (root / folder).rglob("*") if p.is_file() and ".tmp-" not in p.name)
