"""Zip: split the file into skeleton bytes and member data, front to back in one pass.

The central directory is read first (Python's zipfile parses it, zip64 included, after we have
checked its size), then the file is read once in offset order: each local header and whatever
lies between members goes to the skeleton; each member's data is decompressed into the member
tree. A deflated member whose compressed bytes zlib re-creates exactly is laid out as
"re-deflate these chunks at level L"; one it does not (another deflate implementation) has its
compressed bytes kept verbatim in the skeleton as well, so the archive stays byte-identical.
"""

from __future__ import annotations

import calendar
import io
import stat
import struct
import time
import zipfile

from strongroom.archives.members import MAX_MEMBERS
from strongroom.archives.reencode import ZLIB_LEVELS, ReencodeCheck, raw_deflate
from strongroom.archives.source import READ_SIZE, Bounded, Budget, FileSource, InflateReader, NotExpandable, StoredReader
from strongroom.names import show_name
from strongroom.tree import DIR, FILE, Node

MAX_CENTRAL_DIRECTORY = 64 * 1024 * 1024
GIVE_UP_AFTER = 3  # deflated members no zlib level reproduces, none that one does: store the zip plain
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header, 30 bytes


def scan_zip(src: FileSource, builder, budget: Budget) -> int:
    """Read the whole zip through ``builder``; return the number of members."""
    infos, cd_start = _central_directory(src)
    claimed = sum(i.file_size for i in infos)
    if claimed > budget.limit:
        raise NotExpandable(f"members claim {claimed} bytes, more than the {budget.limit} allowed for this file")
    last_level, misses = None, 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < src.pos:
            raise NotExpandable("members overlap (a zip bomb or a damaged file)")
        _copy_gap(src, builder, info.header_offset - src.pos)
        header = src.read_exactly(_LOCAL.size, "local header")
        sig, _, flags, method, _, _, crc, _, _, name_len, extra_len = _LOCAL.unpack(header)
        if sig != b"PK\x03\x04":
            raise NotExpandable("a central directory entry does not point at a local header")
        rest = src.read_exactly(name_len + extra_len, "local header")
        builder.gap(header + rest)
        name = rest[:name_len]
        what = show_name(name)
        if name != _raw_name(info):
            raise NotExpandable(f"member {what}: local and central names differ")
        if flags & 1 or info.flag_bits & 1:
            raise NotExpandable(f"member {what} is encrypted")
        if method != info.compress_type:
            raise NotExpandable(f"member {what}: local and central compression methods differ")
        if not flags & 8 and crc != info.CRC and crc != 0:
            raise NotExpandable(f"member {what}: local and central CRC-32 differ")
        data_start, data_end = src.pos, src.pos + info.compress_size
        if data_end > cd_start:
            raise NotExpandable(f"member {what} runs into the central directory")
        node = _member_node(info, name)
        if node.type == DIR:
            if info.compress_size:
                _copy_gap(src, builder, info.compress_size)  # odd but harmless: kept as skeleton bytes
            builder.member(name, node)
            continue
        compressed = Bounded(src, info.compress_size, f"member {what}")
        if method == zipfile.ZIP_STORED:
            if info.compress_size != info.file_size:
                raise NotExpandable(f"stored member {what}: sizes differ")
            builder.member_data(StoredReader(compressed, info.file_size, info.CRC, budget, what), node,
                                crc32=info.CRC)
        elif method == zipfile.ZIP_DEFLATED:
            check = ReencodeCheck(raw_deflate, ZLIB_LEVELS, last_level)
            reader = InflateReader(compressed, info.file_size, info.CRC, budget, check, f"member {what}")
            if builder.member_data(reader, node, crc32=info.CRC, check=check):
                last_level = check.level
            else:  # zlib does not re-create these bytes: keep them verbatim too
                misses += 1
                if last_level is None and misses >= GIVE_UP_AFTER:
                    # Another deflater made this zip (Info-ZIP's zip, 7-Zip, ...): member-wise it would
                    # be stored twice (verbatim and expanded). Plain keeps it identical at plain cost.
                    raise NotExpandable("its deflated members are not reproducible with zlib (another "
                                        "compressor made it)")
                builder.gap_pread(src.fd, data_start, info.compress_size)
        else:
            raise NotExpandable(f"member {what}: compression method {method} is not supported")
        builder.member(name, node)
    _copy_gap(src, builder, src.size - src.pos)
    return len(infos)


def _central_directory(src: FileSource) -> tuple[list[zipfile.ZipInfo], int]:
    f = io.FileIO(src.fd, "rb", closefd=False)
    try:
        endrec = zipfile._EndRecData(f)  # the end record only: size-checked before the rest is read
        if not endrec:
            raise NotExpandable("no end of central directory record")
        if endrec[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY:
            raise NotExpandable(f"central directory larger than {MAX_CENTRAL_DIRECTORY} bytes")
        if endrec[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:
            raise NotExpandable(f"more than {MAX_MEMBERS} members")
        zf = zipfile.ZipFile(f)
        return zf.infolist(), zf.start_dir
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, struct.error, EOFError,
            OSError) as e:
        raise NotExpandable(f"not a readable zip ({e})") from None


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def _member_node(info: zipfile.ZipInfo, name: bytes) -> Node:
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    is_dir = name.endswith(b"/") or stat.S_ISDIR(mode)
    if stat.S_IFMT(mode) and not is_dir and not stat.S_ISREG(mode):
        raise NotExpandable(f"member {show_name(name)} is not a regular file or directory")
    perms = mode & 0o7777 or (0o755 if is_dir else 0o644)
    return Node(name=b"", type=DIR if is_dir else FILE, mode=perms, mtime_ns=_mtime_ns(info))


def _mtime_ns(info: zipfile.ZipInfo) -> int:
    """The extended-timestamp field's UTC mtime if present, else the DOS time as local time."""
    extra = info.extra
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4:i + 4 + size]
        if tag == 0x5455 and len(body) >= 5 and body[0] & 1:
            return struct.unpack_from("<i", body, 1)[0] * 10**9
        i += 4 + size
    try:
        return int(time.mktime(info.date_time + (0, 0, -1))) * 10**9
    except (OverflowError, ValueError):
        return calendar.timegm((1980, 1, 1, 0, 0, 0)) * 10**9


def _copy_gap(src: FileSource, builder, length: int) -> None:
    while length > 0:
        data = src.read(min(length, READ_SIZE))
        if not data:
            raise NotExpandable("truncated zip")
        builder.gap(data)
        length -= len(data)

