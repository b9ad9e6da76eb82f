"""Boxed objects: signed, public-key encrypted objects (snapshots and audit-log entries).

Layout (spec/repository-format.md §16.3):

    magic (4) | version 0x01 (1) | header length (2, LE) | header | ephemeral X25519 public (32)
    | AEAD(key, zero nonce, zstd(signer block || payload), AAD = all bytes before it) | Ed25519 signature (64)

The header is readable without any key (a write-only key needs it to chain objects); it is
authenticated by the AEAD and the signature. The signature covers every byte before it and is
checked together with its signer's certificate, so only a full key can verify a boxed object.
"""

from __future__ import annotations

import struct

from strongroom.compression import compress_frame, decompress_frame
from strongroom.crypto.aead import TAG_SIZE, ZERO_NONCE
from strongroom.crypto.publickey import CONTEXT_OBJECT_BOX, PUBLIC_SIZE, decrypt_from, encrypt_to
from strongroom.crypto.signing import SIGNATURE_SIZE, SIGNER_SIZE, Signer, SignerInfo, verify_signed
from strongroom.errors import IntegrityError, UnsupportedFormat

VERSION = 1
MAGIC_SNAPSHOT = b"SRSB"
MAGIC_LOG = b"SRLG"
_HEADER_LENGTH = struct.Struct("<H")
PREFIX_SIZE = 4 + 1 + _HEADER_LENGTH.size


def seal_boxed(recipient_public: bytes, signer: Signer, magic: bytes, header: bytes, payload: bytes, *,
               ephemeral_private: bytes | None = None) -> bytes:
    ephemeral_public, cipher = encrypt_to(recipient_public, CONTEXT_OBJECT_BOX, ephemeral_private=ephemeral_private)
    prefix = magic + bytes([VERSION]) + _HEADER_LENGTH.pack(len(header)) + header + ephemeral_public
    body = cipher.seal(ZERO_NONCE, compress_frame(signer.info.encode() + payload), prefix)
    signed = prefix + body
    return signed + signer.sign(signed)


def is_boxed(data: bytes, magic: bytes) -> bool:
    return data[:4] == magic


def boxed_header(data: bytes, magic: bytes, what: str) -> bytes:
    """The cleartext header, checked for shape only (no key needed, nothing authenticated)."""
    if len(data) < PREFIX_SIZE or data[:4] != magic:
        raise IntegrityError(f"{what}: not a strongroom {magic.decode()} object")
    if data[4] != VERSION:
        raise UnsupportedFormat(f"{what}: format version {data[4]} is not supported (this strongroom reads {VERSION})")
    (n,) = _HEADER_LENGTH.unpack_from(data, 5)
    if len(data) < PREFIX_SIZE + n + PUBLIC_SIZE + TAG_SIZE + SIGNATURE_SIZE:
        raise IntegrityError(f"{what}: truncated")
    return data[PREFIX_SIZE:PREFIX_SIZE + n]


def open_boxed(master, data: bytes, magic: bytes, what: str, *,
               max_size: int = 1 << 30) -> tuple[bytes, bytes, SignerInfo]:
    """Decrypt and verify; return (header, payload, signer). Needs a full key."""
    header = boxed_header(data, magic, what)
    eph_at = PREFIX_SIZE + len(header)
    body_at = eph_at + PUBLIC_SIZE
    cipher = decrypt_from(master, data[eph_at:body_at], CONTEXT_OBJECT_BOX)
    signed, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
    plain = decompress_frame(cipher.open(ZERO_NONCE, signed[body_at:], signed[:body_at], what), max_size, what)
    if len(plain) < SIGNER_SIZE:
        raise IntegrityError(f"{what}: missing signer")
    signer = SignerInfo.decode(plain[:SIGNER_SIZE], what)
    verify_signed(master, signer, signed, signature, what)
    return header, plain[SIGNER_SIZE:], signer
