"""Index files: the authoritative record of which blobs each pack holds.

An index file is a sealed object (magic SRIX) whose payload lists packs and their blob entries;
it is written after its packs and before any snapshot that needs them. Layout:
spec/repository-format.md, "Index files".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from strongroom.crypto import sealed
from strongroom.crypto.master import MasterKey
from strongroom.errors import IntegrityError
from strongroom.pack import (ENTRY, PACK_VERSION, PACK_VERSION_GROUPS, BlobEntry, decode_entries,
                             encode_entries)

_COUNT = struct.Struct("<I")
_PACK = struct.Struct("<32s Q H")  # name, size, envelope length
#: One blob entry, fixed size, with the group fields (spec "Grouped blobs"): how decoded index
#: files hand entries to the local cache (``decode_index_raw``), whichever version they were.
WIDE_ENTRY = struct.Struct("<32s B B I Q I I I I")
_NO_GROUP = bytes(8)


@dataclass
class PackRecord:
    name: str  # hex
    size: int
    envelope: bytes
    entries: list[BlobEntry] = field(default_factory=list)


def index_version(packs: list[PackRecord]) -> int:
    """1 unless a pack holds a group: repositories that never group keep their old index files."""
    return sealed.VERSION_GROUPS if any(e.group_length for p in packs for e in p.entries) else sealed.VERSION


def encode_index(packs: list[PackRecord], supersedes: list[str] = (), version: int | None = None) -> bytes:
    version = index_version(packs) if version is None else version
    entry_version = PACK_VERSION_GROUPS if version == sealed.VERSION_GROUPS else PACK_VERSION
    out = [_COUNT.pack(len(supersedes))]
    out += [bytes.fromhex(name) for name in supersedes]
    out.append(_COUNT.pack(len(packs)))
    for p in packs:
        out.append(_PACK.pack(bytes.fromhex(p.name), p.size, len(p.envelope)))
        out.append(p.envelope)
        out.append(encode_entries(p.entries, entry_version))
    return b"".join(out)


def decode_index(payload: bytes, what: str, version: int = sealed.VERSION) -> tuple[list[PackRecord], list[str]]:
    raw, supersedes = decode_index_raw(payload, what, version)
    packs = [PackRecord(name.hex(), size, envelope,
                        [BlobEntry(*fields) for fields in WIDE_ENTRY.iter_unpack(block)])
             for name, size, envelope, block in raw]
    return packs, supersedes


RawPack = tuple[bytes, int, bytes, bytes]  # name, size, envelope, packed WIDE_ENTRY records


def decode_index_raw(payload: bytes, what: str, version: int = sealed.VERSION) -> tuple[list[RawPack], list[str]]:
    """Like ``decode_index`` but without a Python object per blob of a version 1 file: each pack
    is (name bytes, size, envelope, its entries as one block of packed WIDE_ENTRY records) -- for
    bulk loading the cache."""
    if version not in (sealed.VERSION, sealed.VERSION_GROUPS):
        raise IntegrityError(f"{what}: unknown index version {version}")
    supersedes, pos = _supersedes(payload, what)
    try:
        (npacks,) = _COUNT.unpack_from(payload, pos)
        pos += 4
        packs = []
        for _ in range(npacks):
            name, size, env_len = _PACK.unpack_from(payload, pos)
            pos += _PACK.size
            envelope = payload[pos:pos + env_len]
            pos += env_len
            if len(envelope) != env_len:
                raise struct.error
            if version == sealed.VERSION:
                (nblobs,) = _COUNT.unpack_from(payload, pos)
                pos += 4
                block = payload[pos:pos + nblobs * ENTRY.size]
                pos += nblobs * ENTRY.size
                if len(block) != nblobs * ENTRY.size:
                    raise struct.error
                block = b"".join(block[i:i + ENTRY.size] + _NO_GROUP for i in range(0, len(block), ENTRY.size))
            else:
                entries, pos = decode_entries(payload, pos, PACK_VERSION_GROUPS, what)
                block = b"".join(WIDE_ENTRY.pack(e.id, e.type, e.compression, e.dictionary, e.offset, e.length,
                                                 e.raw_length, e.member_offset, e.group_length) for e in entries)
            packs.append((name, size, envelope, block))
    except struct.error:
        raise IntegrityError(f"{what}: truncated index payload") from None
    if pos != len(payload):
        raise IntegrityError(f"{what}: malformed index payload")
    return packs, supersedes


def _supersedes(payload: bytes, what: str) -> tuple[list[str], int]:
    """The index files a payload supersedes, and where its pack records start."""
    try:
        (n,) = _COUNT.unpack_from(payload, 0)
    except struct.error:
        raise IntegrityError(f"{what}: truncated index payload") from None
    if 4 + 32 * n > len(payload):
        raise IntegrityError(f"{what}: truncated index payload")
    return [payload[4 + 32 * i: 4 + 32 * (i + 1)].hex() for i in range(n)], 4 + 32 * n


_VERSIONS = (sealed.VERSION, sealed.VERSION_GROUPS)


def open_index_raw(master: MasterKey, data: bytes, what: str) -> tuple[list[RawPack], list[str]]:
    magic = sealed.magic_of(data, (sealed.MAGIC_INDEX, sealed.MAGIC_INDEX_SHARED))
    payload = sealed.unseal(master, magic, data, what, versions=_VERSIONS)
    return decode_index_raw(payload, what, data[4])


def open_index_supersedes(master: MasterKey, data: bytes, what: str) -> list[str]:
    """Only the ``supersedes`` list of an index file (authenticated; its pack records not parsed)."""
    magic = sealed.magic_of(data, (sealed.MAGIC_INDEX, sealed.MAGIC_INDEX_SHARED))
    return _supersedes(sealed.unseal(master, magic, data, what, versions=_VERSIONS), what)[0]


def seal_index(master: MasterKey, packs: list[PackRecord], supersedes: list[str] = (), *, salt: bytes | None = None,
               magic: bytes = sealed.MAGIC_INDEX_SHARED) -> bytes:
    """Seal an index file; by default as a shared object (SRIW), which write-only keys can read
    to deduplicate. ``magic=sealed.MAGIC_INDEX`` writes the original, full-key-only form. Version
    2 (grouped entries) only when a pack holds a group."""
    version = index_version(packs)
    return sealed.seal(master, magic, encode_index(packs, supersedes, version), salt=salt, version=version)


def open_index(master: MasterKey, data: bytes, what: str) -> tuple[list[PackRecord], list[str]]:
    magic = sealed.magic_of(data, (sealed.MAGIC_INDEX, sealed.MAGIC_INDEX_SHARED))
    payload = sealed.unseal(master, magic, data, what, versions=_VERSIONS)
    return decode_index(payload, what, data[4])
