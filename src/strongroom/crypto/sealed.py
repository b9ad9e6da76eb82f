"""Sealed objects: config, index files, snapshots and locks.

Layout: magic (4) | version (1) | salt (32) | AES-256-GCM(key, zero nonce, zstd(payload)).
The key is derived from the master key and the object's fresh random salt, so each key seals
exactly one message and the zero nonce never repeats under a key. Magic and version are the AAD.
"""

from __future__ import annotations

import secrets

from strongroom.compression import compress_frame, decompress_frame
from strongroom.crypto.aead import ZERO_NONCE
from strongroom.crypto.master import MasterKey

from strongroom.crypto.sealed_header import HEADER_SIZE, MAGIC_CONFIG, SALT_SIZE, VERSION, check_header  # noqa: F401
#: Index files that list grouped blobs (spec "Grouped blobs") are sealed as version 2, so readers
#: that do not know groups refuse them as an unsupported format instead of misreading them.
VERSION_GROUPS = 2

MAGIC_INDEX = b"SRIX"
MAGIC_SNAPSHOT = b"SRSN"
MAGIC_LOCK = b"SRLK"
# Shared objects (spec §16.2): same layout, but the key comes from the shared-object root, which
# write-only keys hold too. Written for every index file and lock since §16; the old magics
# above stay readable.
MAGIC_INDEX_SHARED = b"SRIW"
MAGIC_LOCK_SHARED = b"SRLW"
# Compression dictionaries (spec "Compression dictionaries"): shared, so write-only writers can use them.
MAGIC_DICTIONARY = b"SRDW"
SHARED_MAGICS = (MAGIC_INDEX_SHARED, MAGIC_LOCK_SHARED, MAGIC_DICTIONARY)


def _cipher(master, magic: bytes, salt: bytes):
    return master.shared_cipher(salt) if magic in SHARED_MAGICS else master.object_cipher(salt)


def seal(master: MasterKey, magic: bytes, payload: bytes, *, salt: bytes | None = None, version: int = VERSION) -> bytes:
    salt = salt if salt is not None else secrets.token_bytes(SALT_SIZE)
    header = magic + bytes([version]) + salt
    body = _cipher(master, magic, salt).seal(ZERO_NONCE, compress_frame(payload), magic + bytes([version]))
    return header + body


def magic_of(data: bytes, choices: tuple[bytes, ...]) -> bytes:
    """Which of ``choices`` this object claims to be (the first one when none: check_header then fails)."""
    return data[:4] if data[:4] in choices else choices[0]


def unseal(master: MasterKey, magic: bytes, data: bytes, what: str, *, max_size: int = 1 << 30,
           versions: tuple[int, ...] = (VERSION,)) -> bytes:
    check_header(data, magic, what, versions)
    salt = data[5:HEADER_SIZE]
    compressed = _cipher(master, magic, salt).open(ZERO_NONCE, data[HEADER_SIZE:], data[:5], what)
    return decompress_frame(compressed, max_size, what)
