"""Pack files: encrypted blobs, then an encrypted header that lists them, then a trailer.

    blob ciphertext 0 | blob ciphertext 1 | ... | header ciphertext | envelope | trailer (13 bytes)

Each blob is AES-256-GCM under the pack key with its byte offset in the pack as nonce and
(type, compression, dictionary, id) as associated data. The header is sealed under the same key
with the all-ones nonce, which no offset can equal. The pack key comes from the envelope (type 0:
a random salt fed to the master key's pack-key derivation; type 1, written by write-only keys:
an ephemeral X25519 public key, the pack key derived from X25519 with the repository's key). A pack is named by the plain BLAKE3
hash of its bytes, so damage is detectable without any key. Layout details:
spec/repository-format.md, "Packs".

Version 2 packs (spec "Grouped blobs") may hold *groups*: several small blobs compressed as one
zstd frame and sealed as one ciphertext. Their header lists ranges (one ciphertext each) and the
members of each range; in memory every member is still one ``BlobEntry``, sharing the range's
offset and length, with its place in the group's plaintext.
"""

from __future__ import annotations

import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass

import blake3

from strongroom.compression import decompress_blob
from strongroom.crypto.aead import NONCE_SIZE, TAG_SIZE, Cipher, counter_nonce
from strongroom.crypto.master import MasterKey
from strongroom.crypto.publickey import CONTEXT_PACK_BOX, PUBLIC_SIZE, decrypt_from, encrypt_to
from strongroom.errors import IntegrityError, UnsupportedFormat

DATA = 0
TREE = 1
BLOB_TYPES = {DATA: "data", TREE: "tree"}

PACK_MAGIC = b"SRPK"
PACK_VERSION = 1
PACK_VERSION_GROUPS = 2  # headers list ranges and their members (spec "Grouped blobs")
TRAILER = struct.Struct("<II B 4s")  # envelope length, header ciphertext length, version, magic
ENTRY = struct.Struct("<32s B B I Q I I")  # id, type, compression, dictionary, offset, length, raw length
COUNT = struct.Struct("<I")
# Version 2 header: per ciphertext range, then per member (spec "Grouped blobs").
RANGE = struct.Struct("<B B I Q I I")  # type, compression, dictionary, offset, length, member count
MEMBER = struct.Struct("<32s I")  # id, raw length
#: The largest group plaintext a reader accepts (and so decompresses into memory); writers stay
#: far below (strongroom.writer groups about 64 KiB).
MAX_GROUP_LENGTH = 4 * 1024 * 1024
MAX_GROUP_MEMBERS = 4096
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
    raw_length: int  # plaintext length after decompression (a group member's: its own)
    member_offset: int = 0  # a group member's offset in the group's plaintext
    group_length: int = 0  # a group member's whole group plaintext length; 0: not in a group

    @property
    def decoded_length(self) -> int:
        """What the stored payload decompresses to: the blob, or its whole group."""
        return self.group_length or self.raw_length

    def member_of(self, plaintext: bytes) -> bytes:
        """This blob's bytes from its decoded payload (the group's plaintext, for a member)."""
        if not self.group_length:
            return plaintext
        return plaintext[self.member_offset:self.member_offset + self.raw_length]


def blob_aad(blob_id: bytes, blob_type: int, compression: int, dictionary: int) -> bytes:
    return b"SRBL" + bytes([blob_type, compression]) + dictionary.to_bytes(4, "little") + blob_id


def group_aad(blob_type: int, compression: int, dictionary: int, group_length: int) -> bytes:
    """AAD of a group's ciphertext. The members' ids are not in it: each member is checked by
    its keyed id after decoding, and the header and index that list the members are authenticated."""
    return (b"SRGR" + bytes([blob_type, compression]) + dictionary.to_bytes(4, "little")
            + group_length.to_bytes(4, "little"))


def entry_aad(entry: BlobEntry) -> bytes:
    if entry.group_length:
        return group_aad(entry.type, entry.compression, entry.dictionary, entry.group_length)
    return blob_aad(entry.id, entry.type, entry.compression, entry.dictionary)


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
        self.groups = False  # whether a group was added (the pack is then written as version 2)

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

    def add_group(self, members: list[tuple[bytes, int]], blob_type: int, compression: int,
                  payload: bytes | memoryview, dictionary: int = 0) -> list[BlobEntry]:
        """Seal one group: ``members`` are (id, raw length) in plaintext order, ``payload`` the
        (compressed) concatenation of their plaintexts. A single member is stored as a plain blob."""
        if len(members) == 1:
            blob_id, raw_length = members[0]
            return [self.add(blob_id, blob_type, compression, payload, raw_length, dictionary)]
        total = sum(n for _, n in members)
        if len(members) > MAX_GROUP_MEMBERS or total > MAX_GROUP_LENGTH or min(n for _, n in members) < 1:
            raise ValueError("group too large, or with an empty member")
        offset = len(self._buf)
        sealed = self._cipher.seal(counter_nonce(offset), payload, group_aad(blob_type, compression, dictionary, total))
        self._buf += sealed
        self.groups = True
        out, at = [], 0
        for blob_id, raw_length in members:
            out.append(BlobEntry(blob_id, blob_type, compression, dictionary, offset, len(sealed), raw_length, at, total))
            at += raw_length
        self.entries += out
        return out

    def finish(self) -> tuple[str, bytes]:
        """Seal the header and trailer; return (pack name, pack bytes). Version 1 unless the pack
        holds a group, so repositories that never group keep writing what older readers read."""
        version = PACK_VERSION_GROUPS if self.groups else PACK_VERSION
        header = encode_entries(self.entries, version)
        sealed_header = self._cipher.seal(HEADER_NONCE, header, b"SRPH")
        self._buf += sealed_header
        self._buf += self.envelope
        self._buf += TRAILER.pack(len(self.envelope), len(sealed_header), version, PACK_MAGIC)
        data = bytes(self._buf)
        self._buf = bytearray()
        return pack_name(data), data


def encode_entries(entries: list[BlobEntry], version: int) -> bytes:
    """Entries (in offset order, a group's members together) as a pack header or index record
    lists them: count and 54-byte entries (version 1), or ranges and their members (version 2)."""
    if version == PACK_VERSION:
        if any(e.group_length for e in entries):
            raise ValueError("grouped blobs need version 2")
        return COUNT.pack(len(entries)) + b"".join(
            ENTRY.pack(e.id, e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length) for e in entries)
    out = []
    ranges = 0
    i = 0
    while i < len(entries):
        e = entries[i]
        j = i + 1
        while j < len(entries) and e.group_length and entries[j].offset == e.offset:
            j += 1
        out.append(RANGE.pack(e.type, e.compression, e.dictionary, e.offset, e.length, j - i))
        out += [MEMBER.pack(m.id, m.raw_length) for m in entries[i:j]]
        ranges += 1
        i = j
    return COUNT.pack(ranges) + b"".join(out)


def decode_entries(data: bytes | memoryview, pos: int, version: int, what: str) -> tuple[list[BlobEntry], int]:
    """The inverse of ``encode_entries`` from ``data[pos:]``; returns (entries, end position).
    Checks what the layout alone implies: version 2 ranges have 1 to MAX_GROUP_MEMBERS members,
    a group's members are non-empty and its plaintext at most MAX_GROUP_LENGTH bytes."""
    try:
        (count,) = COUNT.unpack_from(data, pos)
        pos += COUNT.size
        if version == PACK_VERSION:
            end = pos + count * ENTRY.size
            if end > len(data):
                raise struct.error
            return [BlobEntry(*f) for f in ENTRY.iter_unpack(data[pos:end])], end
        entries = []
        for _ in range(count):
            btype, comp, dictionary, offset, length, members = RANGE.unpack_from(data, pos)
            pos += RANGE.size
            if not 1 <= members <= MAX_GROUP_MEMBERS:
                raise IntegrityError(f"{what}: a range lists {members} blobs")
            end = pos + members * MEMBER.size
            if end > len(data):
                raise struct.error
            listed = list(MEMBER.iter_unpack(data[pos:end]))
            pos = end
            if members == 1:
                blob_id, raw_length = listed[0]
                entries.append(BlobEntry(blob_id, btype, comp, dictionary, offset, length, raw_length))
                continue
            total = sum(n for _, n in listed)
            if total > MAX_GROUP_LENGTH or min(n for _, n in listed) < 1:
                raise IntegrityError(f"{what}: a group of {total} bytes or with an empty member")
            at = 0
            for blob_id, raw_length in listed:
                entries.append(BlobEntry(blob_id, btype, comp, dictionary, offset, length, raw_length, at, total))
                at += raw_length
        return entries, pos
    except struct.error:
        raise IntegrityError(f"{what}: truncated list of blob entries") from None


def parse_trailer(tail: bytes, pack_size: int, what: str) -> tuple[int, int, int]:
    """From the last bytes of a pack, return (envelope length, header ciphertext length, version)."""
    if len(tail) < TRAILER.size:
        raise IntegrityError(f"{what}: too short to be a pack")
    env_len, header_len, version, magic = TRAILER.unpack(tail[-TRAILER.size:])
    if magic != PACK_MAGIC:
        raise IntegrityError(f"{what}: pack trailer damaged")
    if version not in (PACK_VERSION, PACK_VERSION_GROUPS):
        raise UnsupportedFormat(f"{what}: pack version {version} is not supported")
    if env_len + header_len + TRAILER.size > pack_size or header_len < TAG_SIZE + COUNT.size:
        raise IntegrityError(f"{what}: pack trailer lengths are impossible")
    return env_len, header_len, version


def tail_size_hint() -> int:
    """How many bytes to read from a pack's end to usually get trailer, envelope and header."""
    return 64 * 1024


def parse_header(master: MasterKey, tail: bytes, pack_size: int, what: str) -> tuple[bytes, list[BlobEntry]]:
    """Decrypt and check the header from the pack's last bytes; return (envelope, entries).

    ``tail`` must hold at least trailer + envelope + header (see ``parse_trailer``)."""
    env_len, header_len, version = parse_trailer(tail, pack_size, what)
    need = TRAILER.size + env_len + header_len
    if len(tail) < need:
        raise ValueError("tail too short: read more bytes")
    envelope = bytes(tail[len(tail) - TRAILER.size - env_len: len(tail) - TRAILER.size])
    sealed = tail[len(tail) - need: len(tail) - need + header_len]
    header = pack_cipher(master, envelope, what).open(HEADER_NONCE, sealed, b"SRPH", f"{what} header")
    entries, end = decode_entries(header, 0, version, f"{what} header")
    if end != len(header):
        raise IntegrityError(f"{what}: header length does not match its entry count")
    data_end = pack_size - need
    expected_offset = 0
    for i, e in enumerate(entries):
        if e.member_offset:  # a later member of the group just checked: same range
            continue
        if e.offset != expected_offset or e.length < TAG_SIZE or e.offset + e.length > data_end:
            raise IntegrityError(f"{what}: header entry {i} has an impossible offset or length")
        # A dictionary (id >= 1, spec "Compression dictionaries") goes only with zstd.
        if e.type not in BLOB_TYPES or e.compression not in (0, 1) or (e.dictionary != 0 and e.compression != 1):
            raise IntegrityError(f"{what}: header entry {i} has an unknown type, compression or dictionary")
        expected_offset = e.offset + e.length
    if expected_offset != data_end:
        raise IntegrityError(f"{what}: blobs do not fill the pack up to its header")
    return envelope, entries


def open_blob(cipher: Cipher, entry: BlobEntry, sealed: bytes | memoryview, what: str) -> bytes:
    """Authenticate and decrypt one blob's payload (still compressed; a member's: its group's)."""
    if len(sealed) != entry.length:
        raise IntegrityError(f"{what}: short read ({len(sealed)} of {entry.length} bytes)")
    return cipher.open(counter_nonce(entry.offset), sealed, entry_aad(entry), what)


class GroupMemo:
    """The groups a reader decoded last (at most ``max_bytes`` of their payloads and plaintexts),
    so that reading their members (a restore, a pack being verified) decrypts and decompresses
    each group once even when other blobs are read in between. Not thread-safe: one per thread."""

    __slots__ = ("_groups", "_bytes", "max_bytes")

    def __init__(self, max_bytes: int = 1024 * 1024) -> None:
        self._groups: OrderedDict[tuple, tuple[bytes, bytes]] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes

    def get(self, key: tuple) -> tuple[bytes, bytes] | None:
        held = self._groups.get(key)
        if held is not None:
            self._groups.move_to_end(key)
        return held

    def put(self, key: tuple, payload: bytes, plaintext: bytes) -> None:
        self._groups[key] = (payload, plaintext)
        self._bytes += len(payload) + len(plaintext)
        while self._bytes > self.max_bytes and len(self._groups) > 1:
            _, (p, t) = self._groups.popitem(last=False)
            self._bytes -= len(p) + len(t)


def decode_entry(cipher: Cipher, entry: BlobEntry, sealed: bytes | memoryview, what: str, dictionaries,
                 blob_id, memo: GroupMemo | None = None, memo_key=None) -> tuple[bytes, bytes]:
    """(payload, plaintext) of one blob: authenticated, decrypted, decompressed (a member: its
    group, then its slice), and checked against its id with ``blob_id``; IntegrityError naming
    ``what`` otherwise. ``memo``/``memo_key`` (the pack, say) reuse a group decoded just before."""
    key = (memo_key, entry.offset, entry.length, entry.group_length)
    held = memo.get(key) if memo is not None and entry.group_length else None
    if held is not None:
        payload, decoded = held
    else:
        payload = open_blob(cipher, entry, sealed, what)
        decoded = decompress_blob(entry.compression, payload, entry.decoded_length, what, entry.dictionary,
                                  dictionaries)
        if memo is not None and entry.group_length:
            memo.put(key, bytes(payload), decoded)
    data = entry.member_of(decoded)
    if blob_id(data) != entry.id:
        raise IntegrityError(f"{what}: content does not match its id")
    return payload, data
