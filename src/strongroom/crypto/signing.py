"""Ed25519 signing keys, one per key file, certified by the master key.

A signature alone proves only that some Ed25519 key signed; anyone with write access to the
storage could add a key. So every signing public key comes with a certificate: a BLAKE3 MAC
under a key derived from the master secret over (kind, public key). Only a full key can make or
check one; a write-only key carries the certificate its creator (a full key) made for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from strongroom.errors import IntegrityError

KIND_FULL = 0
KIND_WRITE_ONLY = 1
KIND_NAMES = {KIND_FULL: "full", KIND_WRITE_ONLY: "write-only"}
SIGNER_SIZE = 1 + 32 + 32  # kind | public key | certificate
SIGNATURE_SIZE = 64
DOMAIN = b"strongroom signature v1\0"


@dataclass(frozen=True)
class SignerInfo:
    """Who signed an object, as recorded in it (verified by ``verify_signed``)."""

    kind: int
    public: bytes
    certificate: bytes

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, f"unknown({self.kind})")

    @property
    def short_id(self) -> str:
        return self.public.hex()[:12]

    def encode(self) -> bytes:
        return bytes([self.kind]) + self.public + self.certificate

    @classmethod
    def decode(cls, data: bytes, what: str) -> SignerInfo:
        if len(data) != SIGNER_SIZE:
            raise IntegrityError(f"{what}: malformed signer block")
        return cls(data[0], bytes(data[1:33]), bytes(data[33:65]))


class Signer:
    """A key file's signing key with its certificate."""

    __slots__ = ("info", "seed", "_private")

    def __init__(self, seed: bytes, kind: int, certificate: bytes) -> None:
        self.seed = seed  # kept so `key passwd` can re-encrypt the same signing key
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.info = SignerInfo(kind, self._private.public_key().public_bytes_raw(), certificate)

    @classmethod
    def for_master(cls, master, seed: bytes, kind: int = KIND_FULL) -> Signer:
        """A signer certified by ``master`` (which must be a full key)."""
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        return cls(seed, kind, master.certify(kind, public))

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(DOMAIN + data)


def public_of(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def verify_signed(master, signer: SignerInfo, data: bytes, signature: bytes, what: str) -> None:
    """Raise IntegrityError unless ``signature`` over ``data`` is by a key certified by ``master``."""
    if master.certify(signer.kind, signer.public) != signer.certificate:
        raise IntegrityError(f"{what}: signed by a key this repository never certified (forged)")
    try:
        Ed25519PublicKey.from_public_bytes(signer.public).verify(signature, DOMAIN + data)
    except (InvalidSignature, ValueError):
        raise IntegrityError(f"{what}: bad signature (altered after signing)") from None
