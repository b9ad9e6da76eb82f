"""Public-key encryption for write-only keys, and the write-only key itself.

A write-only key holds no master secret. It encrypts to the repository's X25519 public key: for
every pack and every boxed object it makes a fresh ephemeral X25519 key pair, and the AEAD key is

    BLAKE3_derive(context, X25519(ephemeral, recipient) || ephemeral_public || recipient_public)

so only the holder of the repository's X25519 private key (derived from the master secret, i.e.
any full key) can decrypt. The ephemeral private key is dropped at once, so the writer cannot
decrypt even what it wrote itself. See spec/repository-format.md §16.
"""

from __future__ import annotations

import blake3
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from strongroom.crypto.aead import Cipher
from strongroom.errors import AccessDenied, IntegrityError

PUBLIC_SIZE = 32
CONTEXT_PACK_BOX = "strongroom 2026-11-22 v1 pack key from x25519"
CONTEXT_OBJECT_BOX = "strongroom 2026-11-22 v1 boxed object key from x25519"


def box_key(context: str, shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    if shared == bytes(32):
        # A low-order ephemeral point would make the key public; never accept it.
        raise ValueError("degenerate X25519 shared secret")
    return blake3.blake3(shared + ephemeral_public + recipient_public, derive_key_context=context).digest()


def encrypt_to(recipient_public: bytes, context: str, *, ephemeral_private: bytes | None = None) -> tuple[bytes, Cipher]:
    """A fresh (ephemeral public key, cipher) pair whose key only the recipient can recompute.
    (A fixed ``ephemeral_private`` is accepted only so that test vectors are reproducible.)"""
    ephemeral = (X25519PrivateKey.from_private_bytes(ephemeral_private) if ephemeral_private is not None
                 else X25519PrivateKey.generate())
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    return ephemeral_public, Cipher(box_key(context, shared, ephemeral_public, recipient_public))


def decrypt_from(master, ephemeral_public: bytes, context: str) -> Cipher:
    """The recipient's side of ``encrypt_to`` (``master`` must be a full key)."""
    if master.write_only:
        raise AccessDenied("a write-only key cannot decrypt repository data")
    try:
        shared = master.recipient_exchange(ephemeral_public)
        return Cipher(box_key(context, shared, ephemeral_public, master.recipient_public))
    except ValueError as e:
        raise IntegrityError(f"invalid ephemeral public key ({e})") from None


class WriterKey:
    """The key material of a write-only key: enough to add data, not to read it.

    Holds the chunk-id key (to compute the same blob ids as everyone, for deduplication), the
    shared-object root (to read index files and write locks), the repository's X25519 public key,
    and a copy of the config payload (the config itself is sealed under the master key).
    """

    __slots__ = ("id_key", "shared_root", "recipient_public", "config_payload")
    write_only = True

    def __init__(self, id_key: bytes, shared_root: bytes, recipient_public: bytes, config_payload: bytes) -> None:
        if len(id_key) != 32 or len(shared_root) != 32 or len(recipient_public) != PUBLIC_SIZE:
            raise ValueError("write-only key material has the wrong sizes")
        self.id_key = id_key
        self.shared_root = shared_root
        self.recipient_public = recipient_public
        self.config_payload = config_payload

    @classmethod
    def from_master(cls, master, config_payload: bytes) -> WriterKey:
        return cls(master.id_key, master.shared_root, master.recipient_public, config_payload)

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self.id_key).digest()

    def shared_cipher(self, salt: bytes) -> Cipher:
        return Cipher(blake3.blake3(salt, key=self.shared_root).digest())

    # Everything a full key can read is refused, with one clear message.
    def pack_cipher(self, salt: bytes) -> Cipher:
        raise AccessDenied("a write-only key cannot read packs")

    def object_cipher(self, salt: bytes) -> Cipher:
        raise AccessDenied("a write-only key cannot read snapshots, the config or the log")

    def recipient_exchange(self, ephemeral_public: bytes) -> bytes:
        raise AccessDenied("a write-only key cannot decrypt repository data")
