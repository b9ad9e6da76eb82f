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
from strongroom.pack import ENTRY, BlobEntry

_COUNT = struct.Struct("<I")
_PACK = struct.Struct("<32s Q H")  # name, size, envelope length


@dataclass
class PackRecord:
    name: str  # hex
    size: int
    envelope: bytes
    entries: list[BlobEntry] = field(default_factory=list)


def encode_index(packs: list[PackRecord], supersedes: list[str] = ()) -> bytes:
    out = [_COUNT.pack(len(supersedes))]
    out += [bytes.fromhex(name) for name in supersedes]
    out.append(_COUNT.pack(len(packs)))
    for p in packs:
        out.append(_PACK.pack(bytes.fromhex(p.name), p.size, len(p.envelope)))
        out.append(p.envelope)
        out.append(_COUNT.pack(len(p.entries)))
        out += [ENTRY.pack(e.id, e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length) for e in p.entries]
    return b"".join(out)


def decode_index(payload: bytes, what: str) -> tuple[list[PackRecord], list[str]]:
    raw, supersedes = decode_index_raw(payload, what)
    packs = [PackRecord(name.hex(), size, envelope,
                        [BlobEntry(*fields) for fields in ENTRY.iter_unpack(block)])
             for name, size, envelope, block in raw]
    return packs, supersedes


RawPack = tuple[bytes, int, bytes, bytes]  # name, size, envelope, packed ENTRY records


def decode_index_raw(payload: bytes, what: str) -> tuple[list[RawPack], list[str]]:
    """Like ``decode_index`` but without a Python object per blob: each pack is (name bytes, size,
    envelope, its entries as one block of packed ENTRY records) -- for bulk loading the cache."""
    try:
        pos = 0
        (n,) = _COUNT.unpack_from(payload, pos)
        supersedes = [payload[4 + 32 * i: 4 + 32 * (i + 1)].hex() for i in range(n)]
        pos = 4 + 32 * n
        (npacks,) = _COUNT.unpack_from(payload, pos)
        pos += 4
        packs = []
        for _ in range(npacks):
            name, size, env_len = _PACK.unpack_from(payload, pos)
            pos += _PACK.size
            envelope = payload[pos:pos + env_len]
            pos += env_len
            (nblobs,) = _COUNT.unpack_from(payload, pos)
            pos += 4
            block = payload[pos:pos + nblobs * ENTRY.size]
            pos += nblobs * ENTRY.size
            if len(envelope) != env_len or len(block) != nblobs * ENTRY.size:
                raise struct.error
            packs.append((name, size, envelope, block))
    except struct.error:
        raise IntegrityError(f"{what}: truncated index payload") from None
    if pos != len(payload) or any(len(s) != 64 for s in supersedes):
        raise IntegrityError(f"{what}: malformed index payload")
    return packs, supersedes


def open_index_raw(master: MasterKey, data: bytes, what: str) -> tuple[list[RawPack], list[str]]:
    magic = sealed.magic_of(data, (sealed.MAGIC_INDEX, sealed.MAGIC_INDEX_SHARED))
    return decode_index_raw(sealed.unseal(master, magic, data, what), what)


def seal_index(master: MasterKey, packs: list[PackRecord], supersedes: list[str] = (), *, salt: bytes | None = None,
               magic: bytes = sealed.MAGIC_INDEX_SHARED) -> bytes:
    """Seal an index file; by default as a shared object (SRIW), which write-only keys can read
    to deduplicate. ``magic=sealed.MAGIC_INDEX`` writes the original, full-key-only form."""
    return sealed.seal(master, magic, encode_index(packs, supersedes), salt=salt)


def open_index(master: MasterKey, data: bytes, what: str) -> tuple[list[PackRecord], list[str]]:
    magic = sealed.magic_of(data, (sealed.MAGIC_INDEX, sealed.MAGIC_INDEX_SHARED))
    return decode_index(sealed.unseal(master, magic, data, what), what)
