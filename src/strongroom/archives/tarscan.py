"""Tar (ustar, GNU and pax): split the stream into skeleton bytes and member data.

Headers, extended headers (pax ``x``/``g``, GNU ``L``/``K``), padding and the end-of-archive
blocks go to the skeleton verbatim; each member's data goes to the member tree as it is (tar
stores data uncompressed, so the layout always reproduces the stream exactly). Every header's
checksum is verified. Hard links, devices, FIFOs and sparse files are not supported: such an
archive is stored as a plain file.
"""

from __future__ import annotations

from strongroom.archives.source import READ_SIZE, Bounded, Budget, NotExpandable, _ReadFromReadinto
from strongroom.names import show_name
from strongroom.tree import DIR, FILE, SYMLINK, Node

BLOCK = 512
MAX_EXTENDED_HEADER = 1024 * 1024
_REGULAR = (b"0", b"\0", b"7")


def is_tar_header(block: bytes) -> bool:
    """A 512-byte block with a valid header checksum (ustar, GNU or old v7)."""
    if len(block) < BLOCK or not any(block[:BLOCK]):
        return False
    try:
        return _checksum_ok(block[:BLOCK])
    except ValueError:
        return False


def scan_tar(stream, builder, budget: Budget) -> int:
    """Read a tar stream (``stream.read(n)``) to its end through ``builder``; return the member count."""
    members = 0
    pax: dict[bytes, bytes] = {}
    long_name = long_link = None
    while True:
        block = _read_block(stream, allow_eof=members == 0 and not pax)
        builder.gap(block)
        if not any(block):
            _end_of_archive(stream, builder)
            return members
        try:
            if not _checksum_ok(block):
                raise NotExpandable("tar header checksum mismatch")
            kind = block[156:157]
            size = _number(block[124:136])
        except ValueError as e:
            raise NotExpandable(f"malformed tar header ({e})") from None
        if kind in (b"x", b"g", b"L", b"K"):
            if size > MAX_EXTENDED_HEADER:
                raise NotExpandable("tar extended header larger than 1 MiB")
            data = _read_exactly(stream, _padded(size))
            builder.gap(data)
            data = data[:size]
            if kind == b"x":
                pax.update(_pax_records(data))
            elif kind == b"L":
                long_name = data.split(b"\0", 1)[0]
            elif kind == b"K":
                long_link = data.split(b"\0", 1)[0]
            continue  # "g" (global) records only carry defaults we do not need
        name = pax.get(b"path") or long_name or _ustar_name(block)
        if b"size" in pax:
            size = _pax_int(pax[b"size"], "size")
        node = _member_node(block, kind, name, pax, long_link, size)
        pax, long_name, long_link = {}, None, None
        members += 1
        if node.type == FILE:
            builder.member_data(_Member(Bounded(stream, size, f"member {show_name(name)}"), budget), node)
        elif size and kind != b"5":
            raise NotExpandable(f"member {show_name(name)}: data on a link")
        elif size:
            builder.gap(_read_exactly(stream, size))  # a directory with data: kept, not expanded
        builder.gap(_read_exactly(stream, _padded(size) - size if node.type == FILE or kind == b"5" else 0))
        builder.member(name, node)


class _Member(_ReadFromReadinto):
    def __init__(self, src: Bounded, budget: Budget) -> None:
        self.src, self.budget = src, budget

    def readinto(self, buf) -> int:
        data = self.src.read(len(buf))
        self.budget.spend(len(data))
        buf[:len(data)] = data
        return len(data)


def _member_node(block: bytes, kind: bytes, name: bytes, pax: dict, long_link: bytes | None, size: int) -> Node:
    what = show_name(name)
    if kind in _REGULAR:
        node_type = DIR if name.endswith(b"/") and not size else FILE
    elif kind == b"5":
        node_type = DIR
    elif kind == b"2":
        node_type = SYMLINK
    elif kind == b"1":
        raise NotExpandable(f"member {what} is a hard link (not supported)")
    else:
        raise NotExpandable(f"member {what} has tar type {kind!r} (not supported)")
    try:
        node = Node(name=b"", type=node_type, mode=_number(block[100:108]) & 0o7777,
                    uid=_pax_int(pax[b"uid"], "uid") if b"uid" in pax else _number(block[108:116]),
                    gid=_pax_int(pax[b"gid"], "gid") if b"gid" in pax else _number(block[116:124]),
                    mtime_ns=_pax_time(pax[b"mtime"]) if b"mtime" in pax else _number(block[136:148]) * 10**9)
    except ValueError as e:
        raise NotExpandable(f"member {what}: malformed header ({e})") from None
    if node.uid >= 2**32 or node.gid >= 2**32:
        raise NotExpandable(f"member {what}: owner id out of range")
    node.user = _text(pax.get(b"uname") or _field(block[265:297]))
    node.group = _text(pax.get(b"gname") or _field(block[297:329]))
    if node_type == SYMLINK:
        node.target = pax.get(b"linkpath") or long_link or _field(block[157:257])
        if not node.target:
            raise NotExpandable(f"member {what}: symlink without target")
    return node


def _end_of_archive(stream, builder) -> None:
    """After the first zero block: the rest (zero blocks, record padding) must be zeros."""
    while True:
        data = stream.read(READ_SIZE)
        if not data:
            return
        if any(data):
            raise NotExpandable("data after the tar end-of-archive marker")
        builder.gap(data)


def _read_block(stream, *, allow_eof: bool) -> bytes:
    block = _read_exactly(stream, BLOCK, eof_ok=allow_eof)
    if not block:
        raise NotExpandable("empty tar stream")
    return block


def _read_exactly(stream, n: int, *, eof_ok: bool = False) -> bytes:
    parts, left = [], n
    while left:
        part = stream.read(min(left, READ_SIZE))
        if not part:
            if eof_ok and left == n:
                return b""
            raise NotExpandable("truncated tar stream")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:BLOCK])
    signed = sum((b - 256 if b > 127 else b) for b in block[:148]) + 8 * 32 + sum(
        (b - 256 if b > 127 else b) for b in block[156:BLOCK])
    return stored in (unsigned, signed)


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        if field[0] == 0xFF:
            raise ValueError("negative number")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not all(48 <= c <= 55 for c in text):
        raise ValueError(f"not an octal number: {text[:20]!r}")
    return int(text, 8)


def _field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _ustar_name(block: bytes) -> bytes:
    name = _field(block[0:100])
    if block[257:262] == b"ustar":
        prefix = _field(block[345:500])
        if prefix and block[257:263] == b"ustar\0":  # POSIX ustar (GNU uses these bytes otherwise)
            return prefix + b"/" + name
    return name


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    records, i = {}, 0
    while i < len(data):
        space = data.find(b" ", i)
        if space < 0:
            raise NotExpandable("malformed pax header")
        try:
            length = int(data[i:space])
        except ValueError:
            raise NotExpandable("malformed pax header") from None
        record = data[space + 1:i + length]
        if length <= 0 or i + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise NotExpandable("malformed pax header")
        key, value = record[:-1].split(b"=", 1)
        records[key] = value
        i += length
    return records


def _pax_int(value: bytes, what: str) -> int:
    if not value.isdigit():
        raise NotExpandable(f"pax {what} is not a number")
    return int(value)


def _pax_time(value: bytes) -> int:
    try:
        whole, _, frac = value.decode("ascii").partition(".")
        return int(whole) * 10**9 + (int((frac + "000000000")[:9]) if frac else 0) * (-1 if whole.startswith("-") else 1)
    except ValueError:
        raise NotExpandable("pax mtime is not a number") from None
