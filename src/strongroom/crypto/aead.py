"""The repository's AEAD: AES-256-GCM from cryptography.

Every key used here is single-purpose (a per-pack or per-object subkey), so nonces only have to
be unique within one key; see spec/repository-format.md, "Encryption".
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.errors import IntegrityError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class Cipher:
    """An AES-256-GCM key with seal/open that map failures to IntegrityError."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("AEAD key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes | memoryview, aad: bytes, what: str) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise IntegrityError(f"{what}: authentication failed (data corrupted or tampered with)") from None


def counter_nonce(counter: int) -> bytes:
    """A 96-bit big-endian counter nonce."""
    return counter.to_bytes(NONCE_SIZE, "big")


ZERO_NONCE = bytes(NONCE_SIZE)
