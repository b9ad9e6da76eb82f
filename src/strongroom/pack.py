"""Pack files: encrypted blobs, then an encrypted header that lists them, then a trailer.

    blob ciphertext 0 | blob ciphertext 1 | ... | header ciphertext | envelope | trailer (13 bytes)

Each blob is AES-256-GCM under the pack key with its byte offset in the pack as nonce and
(type, compression, dictionary, id) as associated data. The header is sealed under the same key
with the all-ones nonce, which no offset can equal. The pack key comes from the envelope (type 0:
a random salt fed to the master key's pack-key derivation; type 1, written by write-only keys:
an ephemeral X25519 public key, the pack key derived from X25519 with the repository's key). A pack is named by the plain BLAKE3
hash of its bytes, so damage is detectable without any key. Layout details:
spec/repository-format.md, "Packs".
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

import blake3

from strongroom.crypto.aead import NONCE_SIZE, TAG_SIZE, Cipher, counter_nonce
from strongroom.crypto.master import MasterKey
from strongroom.crypto.publickey import CONTEXT_PACK_BOX, PUBLIC_SIZE, decrypt_from, encrypt_to
from strongroom.errors import IntegrityError, UnsupportedFormat

DATA = 0
TREE = 1
BLOB_TYPES = {DATA: "data", TREE: "tree"}

PACK_MAGIC = b"SRPK"
PACK_VERSION = 1
TRAILER = struct.Struct("<II B 4s")  # envelope length, header ciphertext length, version, magic
ENTRY = struct.Struct("<32s B B I Q I I")  # id, type, compression, dictionary, offset, length, raw length
COUNT = struct.Struct("<I")
HEADER_NONCE = b"\xff" * NONCE_SIZE
ENVELOPE_DERIVED = 0
ENVELOPE_X25519 = 1
SALT_SIZE = 32
TARGET_PACK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobEntry:
    id: bytes
    type: int
    compression: int
    dictionary: int
    offset: int
    length: int  # stored (encrypted) length, including the AEAD tag
    raw_length: int  # plaintext length after decompression


def blob_aad(blob_id: bytes, blob_type: int, compression: int, dictionary: int) -> bytes:
    return b"SRBL" + bytes([blob_type, compression]) + dictionary.to_bytes(4, "little") + blob_id


def pack_cipher(master: MasterKey, envelope: bytes, what: str) -> Cipher:
    if envelope and envelope[0] == ENVELOPE_X25519:
        if len(envelope) != 1 + PUBLIC_SIZE:
            raise IntegrityError(f"{what}: pack key envelope has the wrong length")
        return decrypt_from(master, envelope[1:], CONTEXT_PACK_BOX)
    if not envelope or envelope[0] != ENVELOPE_DERIVED:
        raise UnsupportedFormat(f"{what}: unknown pack key envelope type")
    if len(envelope) != 1 + SALT_SIZE:
        raise IntegrityError(f"{what}: pack key envelope has the wrong length")
    return master.pack_cipher(envelope[1:])


def pack_name(data: bytes | memoryview) -> str:
    return blake3.blake3(data).hexdigest()


def pack_path(name: str) -> str:
    return f"data/{name[:2]}/{name}"


class PackWriter:
    """Accumulates encrypted blobs in memory (one pack, about 16 MiB) and seals the pack."""

    def __init__(self, master: MasterKey, *, salt: bytes | None = None, ephemeral_private: bytes | None = None) -> None:
        if master.write_only:  # it cannot derive pack keys: encrypt to the repository's public key
            ephemeral_public, self._cipher = encrypt_to(master.recipient_public, CONTEXT_PACK_BOX,
                                                        ephemeral_private=ephemeral_private)
            self.envelope = bytes([ENVELOPE_X25519]) + ephemeral_public
        else:
            salt = salt if salt is not None else secrets.token_bytes(SALT_SIZE)
            self.envelope = bytes([ENVELOPE_DERIVED]) + salt
            self._cipher = master.pack_cipher(salt)
        self._buf = bytearray()
        self.entries: list[BlobEntry] = []

    @property
    def size(self) -> int:
        return len(self._buf)

    def add(self, blob_id: bytes, blob_type: int, compression: int, payload: bytes | memoryview,
            raw_length: int, dictionary: int = 0) -> BlobEntry:
        offset = len(self._buf)
        sealed = self._cipher.seal(counter_nonce(offset), payload, blob_aad(blob_id, blob_type, compression, dictionary))
        self._buf += sealed
        entry = BlobEntry(blob_id, blob_type, compression, dictionary, offset, len(sealed), raw_length)
        self.entries.append(entry)
        return entry

    def finish(self) -> tuple[str, bytes]:
        """Seal the header and trailer; return (pack name, pack bytes)."""
        header = COUNT.pack(len(self.entries)) + b"".join(
            ENTRY.pack(e.id, e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length) for e in self.entries
        )
        sealed_header = self._cipher.seal(HEADER_NONCE, header, b"SRPH")
        self._buf += sealed_header
        self._buf += self.envelope
        self._buf += TRAILER.pack(len(self.envelope), len(sealed_header), PACK_VERSION, PACK_MAGIC)
        data = bytes(self._buf)
        self._buf = bytearray()
        return pack_name(data), data


def parse_trailer(tail: bytes, pack_size: int, what: str) -> tuple[int, int]:
    """From the last bytes of a pack, return (envelope length, header ciphertext length)."""
    if len(tail) < TRAILER.size:
        raise IntegrityError(f"{what}: too short to be a pack")
    env_len, header_len, version, magic = TRAILER.unpack(tail[-TRAILER.size:])
    if magic != PACK_MAGIC:
        raise IntegrityError(f"{what}: pack trailer damaged")
    if version != PACK_VERSION:
        raise UnsupportedFormat(f"{what}: pack version {version} is not supported")
    if env_len + header_len + TRAILER.size > pack_size or header_len < TAG_SIZE + COUNT.size:
        raise IntegrityError(f"{what}: pack trailer lengths are impossible")
    return env_len, header_len


def tail_size_hint() -> int:
    """How many bytes to read from a pack's end to usually get trailer, envelope and header."""
    return 64 * 1024


def parse_header(master: MasterKey, tail: bytes, pack_size: int, what: str) -> tuple[bytes, list[BlobEntry]]:
    """Decrypt and check the header from the pack's last bytes; return (envelope, entries).

    ``tail`` must hold at least trailer + envelope + header (see ``parse_trailer``)."""
    env_len, header_len = parse_trailer(tail, pack_size, what)
    need = TRAILER.size + env_len + header_len
    if len(tail) < need:
        raise ValueError("tail too short: read more bytes")
    envelope = bytes(tail[len(tail) - TRAILER.size - env_len: len(tail) - TRAILER.size])
    sealed = tail[len(tail) - need: len(tail) - need + header_len]
    header = pack_cipher(master, envelope, what).open(HEADER_NONCE, sealed, b"SRPH", f"{what} header")
    (count,) = COUNT.unpack_from(header)
    if len(header) != COUNT.size + count * ENTRY.size:
        raise IntegrityError(f"{what}: header length does not match its entry count")
    data_end = pack_size - need
    entries = []
    expected_offset = 0
    for i in range(count):
        e = BlobEntry(*ENTRY.unpack_from(header, COUNT.size + i * ENTRY.size))
        if e.offset != expected_offset or e.length < TAG_SIZE or e.offset + e.length > data_end:
            raise IntegrityError(f"{what}: header entry {i} has an impossible offset or length")
        # A dictionary (id >= 1, spec "Compression dictionaries") goes only with zstd.
        if e.type not in BLOB_TYPES or e.compression not in (0, 1) or (e.dictionary != 0 and e.compression != 1):
            raise IntegrityError(f"{what}: header entry {i} has an unknown type, compression or dictionary")
        expected_offset = e.offset + e.length
        entries.append(e)
    if expected_offset != data_end:
        raise IntegrityError(f"{what}: blobs do not fill the pack up to its header")
    return envelope, entries


def open_blob(cipher: Cipher, entry: BlobEntry, sealed: bytes | memoryview, what: str) -> bytes:
    """Authenticate and decrypt one blob's payload (still compressed)."""
    if len(sealed) != entry.length:
        raise IntegrityError(f"{what}: short read ({len(sealed)} of {entry.length} bytes)")
    return cipher.open(counter_nonce(entry.offset), sealed,
                       blob_aad(entry.id, entry.type, entry.compression, entry.dictionary), what)
