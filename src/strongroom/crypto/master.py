"""The master key and the subkeys derived from it.

A repository has one 32-byte master secret, stored only inside key files. Everything else is
derived from it with BLAKE3's key-derivation mode (distinct context strings), so the subkeys are
independent: knowing the chunk-id key reveals nothing about the encryption keys.
"""

from __future__ import annotations

import secrets

import blake3

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from strongroom.crypto.aead import Cipher

SECRET_SIZE = 32

CONTEXT_CHUNK_ID = "strongroom 2026-11-22 v1 chunk id key"
CONTEXT_PACK = "strongroom 2026-11-22 v1 pack key root"
CONTEXT_OBJECT = "strongroom 2026-11-22 v1 object key root"
# Added for keys and access (spec §16): objects write-only keys must read, the repository's
# X25519 key pair that write-only keys encrypt to, and the MAC key that certifies signing keys.
CONTEXT_SHARED = "strongroom 2026-11-22 v1 shared object key root"
CONTEXT_X25519 = "strongroom 2026-11-22 v1 repository x25519 key"
CONTEXT_CERTIFY = "strongroom 2026-11-22 v1 signing key certification"
CONTEXT_LEGACY_SIGNING = "strongroom 2026-11-22 v1 legacy full key signing seed"


class MasterKey:
    """A full key: everything can be derived from the master secret."""

    __slots__ = ("secret", "id_key", "_pack_root", "_object_root", "_shared_root", "_x25519", "recipient_public",
                 "_certify_key")
    write_only = False

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_SIZE:
            raise ValueError("master secret must be 32 bytes")
        self.secret = secret
        self.id_key = blake3.blake3(secret, derive_key_context=CONTEXT_CHUNK_ID).digest()
        self._pack_root = blake3.blake3(secret, derive_key_context=CONTEXT_PACK).digest()
        self._object_root = blake3.blake3(secret, derive_key_context=CONTEXT_OBJECT).digest()
        self._shared_root = blake3.blake3(secret, derive_key_context=CONTEXT_SHARED).digest()
        self._x25519 = X25519PrivateKey.from_private_bytes(blake3.blake3(secret, derive_key_context=CONTEXT_X25519).digest())
        self.recipient_public = self._x25519.public_key().public_bytes_raw()
        self._certify_key = blake3.blake3(secret, derive_key_context=CONTEXT_CERTIFY).digest()

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

    def shared_cipher(self, salt: bytes) -> Cipher:
        """The AEAD key of one shared object (index file, lock), which write-only keys can read."""
        return Cipher(blake3.blake3(salt, key=self._shared_root).digest())

    @property
    def shared_root(self) -> bytes:
        return self._shared_root

    def recipient_exchange(self, ephemeral_public: bytes) -> bytes:
        """X25519 with the repository's private key (opens what write-only keys wrote)."""
        return self._x25519.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))

    def certify(self, kind: int, signing_public: bytes) -> bytes:
        """A MAC binding a signing public key and its key kind to this repository's master key."""
        return blake3.blake3(b"strongroom signing key\0" + bytes([kind]) + signing_public, key=self._certify_key).digest()

    def legacy_signing_seed(self) -> bytes:
        """The Ed25519 seed of a full key file written before key files carried their own."""
        return blake3.blake3(self.secret, derive_key_context=CONTEXT_LEGACY_SIGNING).digest()
