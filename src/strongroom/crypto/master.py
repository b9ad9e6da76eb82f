"""The master key and the subkeys derived from it.

A repository has one 32-byte master secret, stored only inside key files. Everything else is
derived from it with BLAKE3's key-derivation mode (distinct context strings), so the subkeys are
independent: knowing the chunk-id key reveals nothing about the encryption keys.
"""

from __future__ import annotations

import secrets

import blake3

from strongroom.crypto.aead import Cipher

SECRET_SIZE = 32

CONTEXT_CHUNK_ID = "strongroom 2026-11-22 v1 chunk id key"
CONTEXT_PACK = "strongroom 2026-11-22 v1 pack key root"
CONTEXT_OBJECT = "strongroom 2026-11-22 v1 object key root"


class MasterKey:
    __slots__ = ("secret", "id_key", "_pack_root", "_object_root")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_SIZE:
            raise ValueError("master secret must be 32 bytes")
        self.secret = secret
        self.id_key = blake3.blake3(secret, derive_key_context=CONTEXT_CHUNK_ID).digest()
        self._pack_root = blake3.blake3(secret, derive_key_context=CONTEXT_PACK).digest()
        self._object_root = blake3.blake3(secret, derive_key_context=CONTEXT_OBJECT).digest()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(SECRET_SIZE))

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The keyed BLAKE3 id of a blob's plaintext (32 bytes)."""
        return blake3.blake3(data, key=self.id_key).digest()

    def pack_cipher(self, salt: bytes) -> Cipher:
        """The AEAD key of one pack, from the pack's random 32-byte salt."""
        return Cipher(blake3.blake3(salt, key=self._pack_root).digest())

    def object_cipher(self, salt: bytes) -> Cipher:
        """The AEAD key of one sealed object (index, snapshot, lock, config)."""
        return Cipher(blake3.blake3(salt, key=self._object_root).digest())
