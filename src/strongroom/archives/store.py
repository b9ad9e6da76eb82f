"""Backup side: one archive file in, one archive node out.

``store_archive`` reads the file once, front to back. Member data goes through the caller's
``store`` (the same chunking, classification and dedup as any file); everything else goes to
the skeleton, spooled to a temporary file (memory bounded) and stored as chunks at the end. The
layout blobs record the order. If anything about the archive is off (see NotExpandable), the
caller stores the file plain; blobs already written for it are left for prune.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import zstandard

from strongroom.archives.detect import TAR, TAR_GZ, TAR_ZST, ZIP
from strongroom.archives.format import (EQUIVALENT, IDENTICAL, LAYOUT_BLOB_BYTES, ArchiveInfo, Gap, MemberData,
                                        Outer, Segment, encode_layout)
from strongroom.archives.members import MemberTree
from strongroom.archives.reencode import ReencodeCheck
from strongroom.archives.source import READ_SIZE, Budget, FileSource, GzipTar, NotExpandable, ZstdTar
from strongroom.archives.tarscan import scan_tar
from strongroom.archives.zipscan import scan_zip
from strongroom.tree import ARCHIVE, Node

# Expanded bytes allowed per archive: 200 times its size plus 1 GiB. Deflate cannot exceed
# ~1032:1; real exports of text compress 5-20:1, so only bombs (or absurd files) hit this.
EXPANSION_RATIO = 200
EXPANSION_SLACK = 1 << 30
SPOOL_IN_MEMORY = 4 * 1024 * 1024
# Layout blobs end after a member whose first chunk id starts with 6 zero bits (one member in 64 on
# average), once they hold 8 KiB: an added member then changes one layout blob, not all after it.
LAYOUT_CUT_MASK = 0xFC
LAYOUT_MIN_BYTES = 8 * 1024


class Sink(Protocol):
    """What the backup provides: chunk-and-store a stream; store a tree-type blob."""

    def store(self, stream: BinaryIO, what: bytes) -> tuple[list[bytes], list[bytes], int]: ...
    def add_tree(self, data: bytes) -> bytes: ...


@dataclass
class StoredArchive:
    node: Node
    reencoded: int  # deflated zip members laid out as "re-deflate at level L"
    verbatim: int  # deflated zip members whose compressed bytes are kept as they are


class _Builder:
    def __init__(self, sink: Sink, mtime_ns: int, what: bytes) -> None:
        self.sink, self.what = sink, what
        self.skeleton = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.skeleton_size = 0
        self.segments: list[Segment] = []
        self._layout_bytes = 0
        self.layout_ids: list[bytes] = []
        self.members = MemberTree(mtime_ns)
        self.reencoded = self.verbatim = 0

    def gap(self, data: bytes) -> None:
        if not data:
            return
        self.skeleton.write(data)
        self.skeleton_size += len(data)
        if self.segments and isinstance(self.segments[-1], Gap):
            self.segments[-1].size += len(data)
        else:
            self._append(Gap(len(data)), 12)

    def gap_pread(self, fd: int, offset: int, length: int) -> None:
        """Bytes of the original file (already read once) copied into the skeleton."""
        end = offset + length
        while offset < end:
            data = os.pread(fd, min(READ_SIZE, end - offset), offset)
            if not data:
                raise NotExpandable("the file shrank while it was read")
            self.gap(data)
            offset += len(data)

    def member_data(self, stream, node: Node, *, crc32: int | None = None, check: ReencodeCheck | None = None) -> bool:
        """Store a member's data into ``node``; lay it out unless ``check`` says re-deflating fails
        (then False: the caller adds the original compressed bytes to the skeleton)."""
        node.content, node.content_lists, node.size = self.sink.store(stream, self.what)
        level = None
        if check is not None:
            level = check.finish()
            if level is None:
                self.verbatim += 1
                return False
            self.reencoded += 1
        self._append(MemberData(node.size, node.content, node.content_lists, level, crc32),
                     80 + 67 * (len(node.content) + len(node.content_lists)))
        first = (node.content or node.content_lists or [b"\xff"])[0]
        if first[0] & LAYOUT_CUT_MASK == 0 and self._layout_bytes >= LAYOUT_MIN_BYTES:
            self._flush_layout()  # a content-defined cut: tomorrow's layout, shifted, cuts here too
        return True

    def member(self, path: bytes, node: Node) -> None:
        self.members.add(path, node)

    def _append(self, seg: Segment, cost: int) -> None:
        if self._layout_bytes + cost > LAYOUT_BLOB_BYTES and self.segments:
            self._flush_layout()
        self.segments.append(seg)
        self._layout_bytes += cost

    def _flush_layout(self) -> None:
        self.layout_ids.append(self.sink.add_tree(encode_layout(self.segments)))
        self.segments, self._layout_bytes = [], 0

    def finish(self) -> tuple[list[bytes], list[bytes], bytes]:
        if self.segments:
            self._flush_layout()
        self.skeleton.seek(0)
        ids, lists, size = self.sink.store(self.skeleton, self.what)
        if size != self.skeleton_size:
            raise NotExpandable("skeleton spool lost bytes")  # cannot happen; never store a wrong layout
        self.skeleton.close()
        return ids, lists, self.members.write(self.sink.add_tree)


def store_archive(fd: int, node: Node, kind: str, sink: Sink) -> StoredArchive:
    """Store the open regular file ``fd`` (``node`` holds its stat metadata) member-wise.
    Raises NotExpandable with the reason if it cannot be; nothing is then referenced."""
    size = node.size
    src = FileSource(fd, size)
    budget = Budget(EXPANSION_RATIO * size + EXPANSION_SLACK)
    builder = _Builder(sink, node.mtime_ns, node.name)
    outer = inner = None
    try:
        if kind == ZIP:
            members = scan_zip(src, builder, budget)
        elif kind == TAR:
            members = scan_tar(src, builder, budget)
        elif kind in (TAR_GZ, TAR_ZST):
            inner = GzipTar(src, budget) if kind == TAR_GZ else ZstdTar(src, budget)
            members = scan_tar(inner, builder, budget)  # reads the stream to its end (and gzip trailer)
            level = inner.check.finish()
            if kind == TAR_GZ:
                outer = Outer("gzip", level, header=inner.header, trailer=inner.trailer)
            else:
                outer = Outer("zstd", level, checksum=inner.checksum, content_size=inner.content_size)
        else:
            raise NotExpandable(f"unknown archive kind {kind}")
        src.finish()
        skeleton, skeleton_lists, subtree = builder.finish()
    except (zlib.error, zstandard.ZstdError, struct.error, ValueError, IndexError, EOFError, OverflowError,
            NotImplementedError) as e:
        # Parsing hostile input: anything unexpected means "not expandable", never a failed backup.
        # Repository and I/O errors (StrongroomError, OSError) are not caught here.
        raise NotExpandable(f"malformed archive ({type(e).__name__}: {e})") from None
    finally:
        builder.skeleton.close()
    fidelity = EQUIVALENT if outer is not None and outer.level is None else IDENTICAL
    node.type = ARCHIVE
    node.subtree = subtree
    node.content, node.content_lists = [], []
    node.archive = ArchiveInfo(format=kind, fidelity=fidelity, sha256=src.sha256.digest(), members=members,
                               skeleton_size=builder.skeleton_size, skeleton=skeleton, skeleton_lists=skeleton_lists,
                               layout=builder.layout_ids, outer=outer,
                               tar_sha256=inner.sha256.digest() if inner is not None else None)
    return StoredArchive(node, builder.reencoded, builder.verbatim)

