"""The plain header of sealed objects (spec "Sealed objects"): magic (4) | version (1) | salt (32).

Apart from strongroom.crypto.sealed so that a repository's config can be checked at start-up,
before any key derivation, without importing zstd and the ciphers."""

from __future__ import annotations

from strongroom.errors import IntegrityError, UnsupportedFormat

SALT_SIZE = 32
HEADER_SIZE = 4 + 1 + SALT_SIZE
VERSION = 1

MAGIC_CONFIG = b"SRCF"


def check_header(data: bytes, magic: bytes, what: str, versions: tuple[int, ...] = (VERSION,)) -> None:
    """Refuse data that is not a sealed object of this kind and version, before any decryption."""
    if len(data) < HEADER_SIZE or data[:4] != magic:
        raise IntegrityError(f"{what}: not a strongroom {magic.decode()} object")
    if data[4] not in versions:
        raise UnsupportedFormat(f"{what}: format version {data[4]} is not supported (this strongroom reads {VERSION})")
