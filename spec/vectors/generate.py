"""Generate the repository-format test vectors in this folder from fixed inputs.

    PYTHONPATH=src python spec/vectors/generate.py          # rewrite the *.json files
    PYTHONPATH=src python spec/vectors/generate.py --check  # exit 1 if they would change

Every input is fixed: the master secret is bytes 0..31, every salt is one repeated byte (a
different byte per object, so no (key, nonce) pair is used twice even here), the key file uses
a cheap Argon2id cost, and time stamps, host and user names are constants. AES-GCM, BLAKE3,
Argon2id and the JSON encodings are deterministic, so every byte is reproducible, except zstd
output, which can change between zstd library versions: files holding zstd output record the
versions used, and always pin the decompressed bytes as well.

Pseudo-random inputs are ``xof(seed, n)``: the first n bytes of the BLAKE3 extended output
(unkeyed, default hash mode) of the ASCII seed string.

tests/test_vectors.py imports this module: ``generate()`` rebuilds every vector with the code;
``generate(replay=replay_tables(stored))`` rebuilds them feeding the recorded zstd frames back
in instead of compressing, so that every byte not produced by zstd can be compared exactly
whatever the installed zstd version.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import zlib
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import blake3
import fastcdc
import zstandard
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from strongroom import compression, dictionary
from strongroom.audit import encode_header as log_header
from strongroom.chain import ChainLink, group_tag
from strongroom.chunker import BINARY, TEXT, ChunkerParams, ChunkingProfiles, chunk_stream, classify
from strongroom.config import Config, seal_config
from strongroom.crypto import master as master_mod
from strongroom.crypto import boxed, sealed
from strongroom.crypto.keyfile import WRITER_AAD, SIGNING_AAD, create_writer_key_file
from strongroom.crypto.publickey import CONTEXT_OBJECT_BOX, CONTEXT_PACK_BOX, WriterKey, box_key
from strongroom.crypto.signing import DOMAIN as SIGNATURE_DOMAIN, KIND_FULL, KIND_WRITE_ONLY, Signer
from strongroom.crypto.aead import ZERO_NONCE, Cipher, counter_nonce
from strongroom.crypto.keyfile import KEY_AAD, KdfParams, KeyInfo, create_key_file
from strongroom.crypto.master import MasterKey
from strongroom.indexfile import PackRecord, encode_index, seal_index
from strongroom.locking import LockInfo
from strongroom.messages.model import Message
from strongroom.pack import (DATA, ENTRY, HEADER_NONCE, PACK_VERSION_GROUPS, TRAILER, TREE, PackWriter, blob_aad,
                             encode_entries, entry_aad, pack_path)
from strongroom.snapshot import Snapshot, Summary
from strongroom.tree import DIR, FILE, SYMLINK, Node, encode_chunk_list, encode_tree

VECTOR_DIR = Path(__file__).resolve().parent

MASTER_SECRET = bytes(range(32))
PASSWORD = b"correct horse battery staple"
KDF = KdfParams(memory_kib=64, iterations=1, lanes=1)

SALT_DATA_PACK = b"\x11" * 32
SALT_TREE_PACK = b"\x12" * 32
SALT_INDEX = b"\x21" * 32
SALT_SNAPSHOT = b"\x22" * 32
SALT_CONFIG = b"\x23" * 32
SALT_LOCK = b"\x24" * 32
SALT_HOLD = b"\x2a" * 32  # §17.1
SALT_DICTIONARY = b"\x2b" * 32  # compression dictionaries
SALT_DICTIONARY_PACK = b"\x13" * 32
SALT_KEY_FILE = b"\x31" * 16
SALT_GROUP_PACK = b"\x14" * 32  # grouped blobs (§24)
SALT_GROUP_INDEX = b"\x26" * 32

ZSTD_VERSIONS = {"zstandard": zstandard.__version__, "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION))}

# Files whose bytes depend on zstd output (the others never touch zstd).
ZSTD_DEPENDENT = ("compression.json", "pack.json", "tree.json", "index.json", "snapshot.json", "config.json",
                  "lock.json", "access.json", "dictionary.json")


def xof(seed: str, n: int) -> bytes:
    """The first n bytes of the BLAKE3 XOF of the ASCII seed."""
    return blake3.blake3(seed.encode("ascii")).digest(length=n)


def letters(seed: str, n: int) -> bytes:
    """Text-like pseudo-random bytes: xof(seed, n) with each byte b mapped to ALPHABET[b % 32]."""
    return bytes(LETTER_ALPHABET[b % 32] for b in xof(seed, n))


LETTER_ALPHABET = b"abcdefghijklmnopqrstuvwxyz .,\n-'"
assert len(LETTER_ALPHABET) == 32

H = bytes.hex


# -- zstd: real, or replayed from recorded vectors -------------------------------------------------

class _Zstd:
    def __init__(self, replay: dict | None) -> None:
        self.blobs = replay["blobs"] if replay else None  # (plaintext, level) -> (code, payload)
        self.frames = replay["frames"] if replay else None  # sealed payload -> zstd frame
        self.dict_blobs = replay["dict_blobs"] if replay else None  # plaintext -> (code, dictionary, payload)

    def dict_blob(self, data: bytes, dict_id: int, content: bytes) -> tuple[int, int, bytes]:
        if self.dict_blobs is not None and data in self.dict_blobs:
            return self.dict_blobs[data]
        code, used, payload = compression.compress_blob_with(data, compression.DEFAULT_LEVEL, dict_id,
                                                             zstandard.ZstdCompressionDict(content))
        return code, used, bytes(payload)

    def blob(self, data: bytes, level: int = compression.DEFAULT_LEVEL) -> tuple[int, bytes]:
        if self.blobs is not None and (data, level) in self.blobs:
            return self.blobs[(data, level)]
        code, payload = compression.compress_blob(data, level)
        return code, bytes(payload)

    @contextmanager
    def sealing(self) -> Iterator[None]:
        """While active, sealed objects use the replayed frame for a known payload."""
        if self.frames is None:
            yield
            return
        original = sealed.compress_frame
        replayed = lambda payload: self.frames.get(bytes(payload)) or original(payload)  # noqa: E731
        sealed.compress_frame = boxed.compress_frame = replayed
        try:
            yield
        finally:
            sealed.compress_frame = boxed.compress_frame = original


def replay_tables(vectors: dict[str, dict]) -> dict:
    """The zstd outputs recorded in a set of vectors, for ``generate(replay=...)``."""
    blobs: dict = {}
    frames: dict = {}
    for case in vectors["compression.json"]["cases"]:
        blobs[(bytes.fromhex(case["input"]), case["level"])] = (case["code"], bytes.fromhex(case["payload"]))
    for name in ("pack.json", "tree.json"):
        for b in vectors[name]["pack"]["blobs"]:
            blobs[(bytes.fromhex(b["plaintext"]), compression.DEFAULT_LEVEL)] = (
                b["compression"], bytes.fromhex(b["payload"]))
    for name in ("index.json", "snapshot.json", "config.json", "lock.json", "hold.json"):
        if name not in vectors:
            continue
        obj = vectors[name]["sealed"]
        frames[bytes.fromhex(obj["payload"])] = bytes.fromhex(obj["zstd_frame"])
    if "access.json" in vectors:
        access = vectors["access.json"]
        for obj in [access["shared_index"]] + [access[k] for k in ("boxed_snapshot", "log_entry")]:
            frames[bytes.fromhex(obj["zstd_input"])] = bytes.fromhex(obj["zstd_frame"])
    if "groups.json" in vectors:
        doc = vectors["groups.json"]
        for r in doc["pack"]["ranges"]:
            blobs[(bytes.fromhex(r["plaintext"]), compression.DEFAULT_LEVEL)] = (r["compression"],
                                                                                 bytes.fromhex(r["payload"]))
        frames[bytes.fromhex(doc["index"]["payload"])] = bytes.fromhex(doc["index"]["zstd_frame"])
    dict_blobs: dict = {}
    if "dictionary.json" in vectors:
        doc = vectors["dictionary.json"]
        frames[bytes.fromhex(doc["dictionary"]["content"])] = bytes.fromhex(doc["dictionary"]["zstd_frame"])
        b = doc["blob"]
        dict_blobs[bytes.fromhex(b["plaintext"])] = (b["compression"], b["dictionary"], bytes.fromhex(b["payload"]))
    return {"blobs": blobs, "frames": frames, "dict_blobs": dict_blobs}


# -- pieces ----------------------------------------------------------------------------------------

def _sealed_vector(master: MasterKey, magic: bytes, salt: bytes, payload: bytes, data: bytes) -> dict:
    header = data[:sealed.HEADER_SIZE]
    frame = master.object_cipher(salt).open(ZERO_NONCE, data[sealed.HEADER_SIZE:], header[:5], "vector")
    return {
        "magic": magic.decode(),
        "version": sealed.VERSION,
        "salt": H(salt),
        "object_key": H(blake3.blake3(salt, key=master._object_root).digest()),
        "aad": H(header[:5]),
        "payload": H(payload),
        "zstd_frame": H(frame),
        "bytes": H(data),
        "name": blake3.blake3(data).hexdigest(),
    }


def _pack_vector(master: MasterKey, zstd: _Zstd, salt: bytes, blobs: list[tuple[int, bytes]]) -> dict:
    writer = PackWriter(master, salt=salt)
    described = []
    for blob_type, plaintext in blobs:
        code, payload = zstd.blob(plaintext)
        blob_id = master.blob_id(plaintext)
        writer.add(blob_id, blob_type, code, payload, len(plaintext))
        described.append({"type": blob_type, "plaintext": H(plaintext), "id": H(blob_id), "compression": code,
                          "dictionary": 0, "payload": H(payload), "aad": H(blob_aad(blob_id, blob_type, code, 0))})
    entries = list(writer.entries)
    name, data = writer.finish()
    header_plain = len(entries).to_bytes(4, "little") + b"".join(
        ENTRY.pack(e.id, e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length) for e in entries)
    for d, e in zip(described, entries):
        d.update(offset=e.offset, length=e.length, raw_length=e.raw_length, nonce=H(counter_nonce(e.offset)),
                 ciphertext=H(data[e.offset:e.offset + e.length]))
    data_end = entries[-1].offset + entries[-1].length if entries else 0
    header_len = len(header_plain) + 16
    return {
        "salt": H(salt),
        "pack_key": H(blake3.blake3(salt, key=master._pack_root).digest()),
        "envelope": H(writer.envelope),
        "blobs": described,
        "header_plaintext": H(header_plain),
        "header_nonce": H(HEADER_NONCE),
        "header_aad": H(b"SRPH"),
        "header_ciphertext": H(data[data_end:data_end + header_len]),
        "trailer": H(data[-TRAILER.size:]),
        "bytes": H(data),
        "size": len(data),
        "name": name,
        "path": pack_path(name),
    }


def _record(pack: dict) -> PackRecord:
    from strongroom.pack import BlobEntry
    return PackRecord(pack["name"], pack["size"], bytes.fromhex(pack["envelope"]), [
        BlobEntry(bytes.fromhex(b["id"]), b["type"], b["compression"], b["dictionary"], b["offset"], b["length"],
                  b["raw_length"]) for b in pack["blobs"]])


def _node_json(node: Node) -> dict:
    """A node described for readers of the vector (bytes as hex)."""
    return {"name": H(node.name), "type": node.type, "mode": node.mode, "uid": node.uid, "gid": node.gid,
            "mtime_ns": node.mtime_ns, "ctime_ns": node.ctime_ns, "size": node.size, "inode": node.inode,
            "device": node.device, "user": node.user, "group": node.group,
            "content": [H(c) for c in node.content], "content_lists": [H(c) for c in node.content_lists],
            "subtree": None if node.subtree is None else H(node.subtree),
            "target": None if node.target is None else H(node.target)}


# -- the vectors -----------------------------------------------------------------------------------

def keys_vector(master: MasterKey) -> dict:
    return {
        "about": "Subkeys derived from the master secret (BLAKE3 derive_key, then keyed BLAKE3 of a salt).",
        "master_secret": H(MASTER_SECRET),
        "contexts": {"chunk_id": master_mod.CONTEXT_CHUNK_ID, "pack": master_mod.CONTEXT_PACK,
                     "object": master_mod.CONTEXT_OBJECT},
        "id_key": H(master.id_key),
        "pack_key_root": H(master._pack_root),
        "object_key_root": H(master._object_root),
        "pack_keys": [{"salt": H(s), "key": H(blake3.blake3(s, key=master._pack_root).digest())}
                      for s in (SALT_DATA_PACK, SALT_TREE_PACK)],
        "object_keys": [{"salt": H(s), "key": H(blake3.blake3(s, key=master._object_root).digest())}
                        for s in (SALT_INDEX, SALT_SNAPSHOT, SALT_CONFIG, SALT_LOCK)],
    }


def chunk_ids_vector(master: MasterKey) -> dict:
    cases = [{"input": H(i), "id": H(master.blob_id(i))} for i in (b"", b"abc", bytes(range(256)))]
    seed, n = "strongroom chunk id vector", 100_000  # more than one BLAKE3 chunk (1 KiB) and tree level
    cases.append({"xof_seed": seed, "length": n, "id": H(master.blob_id(xof(seed, n)))})
    return {"about": ("Blob ids: keyed BLAKE3-256 of the plaintext under id_key (see keys.json). An input is "
                      "given as hex, or as xof(seed, length)."),
            "master_secret": H(MASTER_SECRET), "cases": cases}


def _chunking_case(name: str, seed: str, length: int, transform: str, params: ChunkerParams) -> dict:
    data = letters(seed, length) if transform == "letters" else xof(seed, length)
    boundaries, pos = [], 0
    for chunk in chunk_stream(io.BytesIO(data), params):
        pos += len(chunk)
        boundaries.append(pos)
    return {"name": name, "seed": seed, "length": length, "transform": transform, "input_blake3": blake3.blake3(
        data).hexdigest(), "params": asdict(params), "boundaries": boundaries}


def chunking_vector() -> dict:
    profiles = ChunkingProfiles()
    return {
        "about": ("Chunk boundaries (the end offset of every chunk; the last equals the length) of "
                  "pseudo-random inputs. transform 'none': input = xof(seed, length), the first length bytes "
                  "of the BLAKE3 XOF of the ASCII seed. transform 'letters': every byte b of that output "
                  "replaced by alphabet[b % 32]."),
        "alphabet": LETTER_ALPHABET.decode(),
        "fastcdc_version": fastcdc.__version__,
        "default_profiles": profiles.to_json(),
        "cases": [
            _chunking_case("text profile, text-like input", "strongroom chunking vector text", 1 << 20, "letters",
                           profiles.text),
            _chunking_case("text profile, random input", "strongroom chunking vector random", 1 << 20, "none",
                           profiles.text),
            _chunking_case("binary profile, random input", "strongroom chunking vector binary", 20 << 20, "none",
                           profiles.binary),
            _chunking_case("small sizes", "strongroom chunking vector small", 65536, "none",
                           ChunkerParams(64, 256, 1024)),
            _chunking_case("no normalised phase (center size 0)", "strongroom chunking vector flat", 65536, "none",
                           ChunkerParams(1000, 1024, 4096)),
        ],
    }


def _classify_cases() -> list[tuple[list[tuple[bytes, int]], str]]:
    a = b"a"
    return [
        ([], "empty content"),
        ([(b"hello world\n", 1)], "ASCII"),
        ([("gr\u00fc\u00dfe \u2603 \U0001d11e\n".encode(), 1)], "valid UTF-8"),
        ([(a, 50), (b"\x01", 50)], "valid UTF-8 full of control characters is still text"),
        ([(b"%PDF-1.7\n", 1), (a, 100)], "known magic prefix"),
        ([(b"\x1f\x8b", 1), (a, 100)], "gzip magic"),
        ([(b"SQLite format 3\x00", 1)], "SQLite magic"),
        ([(a, 100), (b"\x00", 1), (a, 100)], "NUL byte"),
        ([(a, 8192), (b"\x00", 1)], "NUL just outside the 8192-byte window"),
        ([(a, 8190), (b"\xe2\x82\xac", 1)], "3-byte character cut by the window: text"),
        ([(b"\x01\x02\x03\xe2\x82\xac", 1)], "valid UTF-8 with controls"),
        ([(b"\x01\x02\x03\xe2\x82", 1)], "ends in a proper prefix of a UTF-8 sequence: text"),
        ([(b"\x01\x02\x03\xf0\x9f\x98", 1)], "ends in a proper prefix of a 4-byte sequence: text"),
        ([(b"\x01\x02\x03\xe0\x80", 1)], "ends in bytes that cannot start a valid sequence: ratio rule"),
        ([(b"\x01\x02\x03\xed\xa0\x80", 1)], "encoded surrogate is not UTF-8: ratio rule"),
        ([(b"caf\xe9 r\xe9sum\xe9 ", 20)], "Latin-1 text: bytes >= 0x80 count as printable"),
        ([(b"\xff", 1), (a, 94), (b"\x01", 5)], "not UTF-8, exactly 95% printable: text"),
        ([(b"\xff", 1), (a, 93), (b"\x01", 6)], "not UTF-8, 94% printable: binary"),
        ([(b"\xff\x09\x0a\x0d", 25)], "tab, LF, CR count as printable"),
    ]


def classify_vector() -> dict:
    cases = []
    for parts, note in _classify_cases():
        head = b"".join(p * n for p, n in parts)
        cases.append({"parts": [[H(p), n] for p, n in parts], "length": len(head), "class": classify(head),
                      "note": note})
    return {"about": ("classify() results. The content is the concatenation of each part's bytes repeated "
                      "its count. Class 'text' selects the text chunking profile, 'binary' the binary one."),
            "classes": [TEXT, BINARY], "cases": cases}


def compression_vector(zstd: _Zstd) -> dict:
    inputs = [
        ("shorter than 64 bytes: always raw", b"strongroom " * 5, 3),
        ("compressible", b"strongroom keeps encrypted backups. " * 8, 3),
        ("incompressible (random)", xof("strongroom compression vector", 512), 3),
        ("level 0 disables compression", b"strongroom keeps encrypted backups. " * 8, 0),
    ]
    cases = []
    for note, data, level in inputs:
        code, payload = zstd.blob(data, level)
        cases.append({"note": note, "input": H(data), "level": level, "code": code, "payload": H(payload)})
    return {"about": ("Blob compression: code 0 = raw (payload is the input), 1 = one zstd frame without "
                      "content size or checksum. 'payload' depends on the zstd version for code 1; "
                      "'input' is what it must decompress to."),
            "zstd": ZSTD_VERSIONS, "cases": cases}


def data_blobs() -> list[bytes]:
    return [b"Hello from strongroom! This line repeats and compresses well.\n" * 8,
            xof("strongroom data blob", 100)]


def pack_vector(master: MasterKey, zstd: _Zstd) -> dict:
    return {"about": ("A data pack with two blobs (one zstd-compressed, one raw). Fields derived from zstd "
                      "output: the first blob's payload/ciphertext, the header, the pack bytes and name."),
            "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET),
            "pack": _pack_vector(master, zstd, SALT_DATA_PACK, [(DATA, b) for b in data_blobs()])}


def tree_nodes(master: MasterKey, empty_tree_id: bytes, list_id: bytes) -> list[Node]:
    blob_ids = [master.blob_id(b) for b in data_blobs()]
    size = sum(len(b) for b in data_blobs())
    common = {"uid": 1000, "gid": 1000, "user": "alice", "group": "staff", "device": 2049}
    return [
        Node(name=b"hello.txt", type=FILE, mode=0o644, mtime_ns=1795000000123456789, ctime_ns=1795000000123456789,
             size=size, inode=131073, content=blob_ids, **common),
        Node(name=b"big.bin", type=FILE, mode=0o600, mtime_ns=1795000001000000000, ctime_ns=1795000001000000000,
             size=size, inode=131074, content_lists=[list_id], **common),
        Node(name=b"caf\xe9", type=FILE, mode=0o644, inode=131075, **common),
        Node(name=b"docs", type=DIR, mode=0o755, mtime_ns=1795000002000000000, inode=131076, subtree=empty_tree_id,
             **common),
        Node(name=b"link", type=SYMLINK, mode=0o777, mtime_ns=-1000000000, inode=131077, target=b"hello.txt",
             **common),
        Node(name="gr\u00fc\u00dfe".encode(), type=SYMLINK, mode=0o777, inode=131078, target=b"\xff\xfe/x",
             **common),
        Node(name=b'say "hi"\t\\.txt', type=FILE, mode=0o4755, inode=131079, uid=0, gid=0),
    ]


def tree_vector(master: MasterKey, zstd: _Zstd) -> dict:
    empty = encode_tree([])
    chunk_list = encode_chunk_list([master.blob_id(b) for b in data_blobs()])
    nodes = tree_nodes(master, master.blob_id(empty), master.blob_id(chunk_list))
    root = encode_tree(nodes)
    return {
        "about": ("Trees and a chunk list, and the tree pack holding them (blob type 1). The nodes are listed "
                  "in the order given to encode_tree; 'encoded' is sorted by name bytes. Name, target and "
                  "ids are hex in 'nodes'. (Real writers use chunk lists only for files of 2048 chunks or more; "
                  "big.bin uses one to pin the encoding.)"),
        "zstd": ZSTD_VERSIONS,
        "master_secret": H(MASTER_SECRET),
        "root": {"nodes": [_node_json(n) for n in nodes], "encoded": H(root), "text": root.decode("utf-8"),
                 "id": H(master.blob_id(root))},
        "empty": {"encoded": H(empty), "text": empty.decode(), "id": H(master.blob_id(empty))},
        "chunk_list": {"ids": [H(master.blob_id(b)) for b in data_blobs()], "encoded": H(chunk_list),
                       "id": H(master.blob_id(chunk_list))},
        "pack": _pack_vector(master, zstd, SALT_TREE_PACK, [(TREE, root), (TREE, empty), (TREE, chunk_list)]),
    }


def index_vector(master: MasterKey, zstd: _Zstd, pack: dict, tree: dict) -> dict:
    records = [_record(pack["pack"]), _record(tree["pack"])]
    supersedes = [blake3.blake3(b"an older index file").hexdigest()]
    payload = encode_index(records, supersedes)
    with zstd.sealing():
        data = seal_index(master, records, supersedes, salt=SALT_INDEX, magic=sealed.MAGIC_INDEX)
    return {"about": ("An index file listing the packs of pack.json and tree.json, superseding one (made-up) "
                      "older index file. 'payload' is the decrypted, decompressed content."),
            "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET), "supersedes": supersedes,
            "packs": [{"name": r.name, "size": r.size, "envelope": H(r.envelope),
                       "entries": [[H(e.id), e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length]
                                   for e in r.entries]} for r in records],
            "sealed": _sealed_vector(master, sealed.MAGIC_INDEX, SALT_INDEX, payload, data)}


def groups_vector(master: MasterKey, zstd: _Zstd) -> dict:
    """§24: a version 2 pack with a plain blob and a group of three, and a version 2 index file."""
    common = letters("strongroom vector group common", 700)
    single = letters("strongroom vector group single", 900)
    members = [common + letters(f"strongroom vector group member {i}", 150 + 100 * i) for i in range(3)]
    writer = PackWriter(master, salt=SALT_GROUP_PACK)
    ranges = []
    for plaintexts in ([single], members):
        joined = b"".join(plaintexts)
        code, payload = zstd.blob(joined)
        ids = [master.blob_id(p) for p in plaintexts]
        entries = writer.add_group([(i, len(p)) for i, p in zip(ids, plaintexts)], DATA, code, payload)
        e = entries[0]
        aad = entry_aad(e)
        ranges.append({"plaintext": H(joined), "compression": code, "payload": H(payload), "aad": H(aad),
                       "offset": e.offset, "length": e.length, "nonce": H(counter_nonce(e.offset)),
                       "members": [{"id": H(m.id), "plaintext": H(p), "raw_length": m.raw_length,
                                    "member_offset": m.member_offset, "group_length": m.group_length}
                                   for m, p in zip(entries, plaintexts)]})
    entries = list(writer.entries)
    name, data = writer.finish()
    header_plain = encode_entries(entries, PACK_VERSION_GROUPS)
    data_end = entries[-1].offset + entries[-1].length
    for r in ranges:
        r["ciphertext"] = H(data[r["offset"]:r["offset"] + r["length"]])
    record = PackRecord(name, len(data), writer.envelope, entries)
    payload = encode_index([record])
    with zstd.sealing():
        index = seal_index(master, [record], salt=SALT_GROUP_INDEX)
    frame = master.shared_cipher(SALT_GROUP_INDEX).open(ZERO_NONCE, index[sealed.HEADER_SIZE:], index[:5], "vector")
    return {
        "about": ("Grouped blobs (§24): a version 2 pack holding a plain blob (a range of one member, blob "
                  "AAD) and a group of three members (one zstd frame of their concatenation, group AAD), "
                  "and the version 2 index file (shared magic SRIW, sealed version 2) listing it. 'plaintext' "
                  "of a range is what its payload decodes to. Fields derived from zstd output: payload, "
                  "ciphertext, header_ciphertext, bytes, name, the index's zstd_frame and bytes."),
        "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET),
        "pack": {"salt": H(SALT_GROUP_PACK), "envelope": H(writer.envelope), "ranges": ranges,
                 "header_plaintext": H(header_plain),
                 "header_ciphertext": H(data[data_end:data_end + len(header_plain) + 16]),
                 "trailer": H(data[-TRAILER.size:]), "bytes": H(data), "size": len(data), "name": name},
        "index": {"magic": sealed.MAGIC_INDEX_SHARED.decode(), "version": sealed.VERSION_GROUPS,
                  "salt": H(SALT_GROUP_INDEX), "aad": H(index[:5]), "payload": H(payload), "zstd_frame": H(frame),
                  "bytes": H(index), "name": blake3.blake3(index).hexdigest()},
    }


def make_snapshot(tree_id: str) -> Snapshot:
    return Snapshot(time="2026-11-22T10:00:00.123456+01:00", hostname="h\u00f6st", username="alice",
                    paths=["/home/alice/docs", "/srv/chat"], tree=tree_id, tags=["daily", "vectors"], parent=None,
                    program_version="strongroom 0.1.0",
                    summary=Summary(files_new=3, files_changed=1, files_unchanged=2, dirs=2, errors=0,
                                    bytes_read=1000, bytes_total=2000, bytes_added=700, blobs_added=5,
                                    duration_s=1.25))


def snapshot_vector(master: MasterKey, zstd: _Zstd, tree: dict) -> dict:
    snap = make_snapshot(tree["root"]["id"])
    payload = snap.encode()
    with zstd.sealing():
        data = sealed.seal(master, sealed.MAGIC_SNAPSHOT, payload, salt=SALT_SNAPSHOT)
    return {"about": "A snapshot of the root tree of tree.json; its id is the name.",
            "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET), "json": json.loads(payload),
            "sealed": _sealed_vector(master, sealed.MAGIC_SNAPSHOT, SALT_SNAPSHOT, payload, data)}


def make_config() -> Config:
    # Pinned to the settings of the first format version (no dictionaries), so this vector and the
    # write-only key's copy of the config stay byte-identical; dictionary.json has the newer key.
    return Config(id="0123456789abcdef" * 4, created="2026-11-22T09:00:00+00:00",
                  chunking=ChunkingProfiles(ChunkerParams(4 * 1024, 16 * 1024, 64 * 1024),
                                            ChunkerParams(256 * 1024, 1024 * 1024, 4 * 1024 * 1024)),
                  dictionary_size=0, group_size=0)


def dictionary_vector(master: MasterKey, zstd: _Zstd) -> dict:
    """A compression dictionary object and a data pack with one blob compressed with it."""
    # Any byte string is a valid zstd dictionary (raw content); trained ones begin 37 A4 30 EC.
    content = letters("strongroom vector dictionary", 2048)
    dict_id = dictionary.dictionary_id(master, content)
    with zstd.sealing():
        data = sealed.seal(master, sealed.MAGIC_DICTIONARY, content, salt=SALT_DICTIONARY)
    frame = master.shared_cipher(SALT_DICTIONARY).open(ZERO_NONCE, data[sealed.HEADER_SIZE:], data[:5], "vector")
    plaintext = content[300:1300] + letters("strongroom vector dictionary blob", 200)
    blob_id = master.blob_id(plaintext)
    code, used, payload = zstd.dict_blob(plaintext, dict_id, content)
    packer = PackWriter(master, salt=SALT_DICTIONARY_PACK)
    entry = packer.add(blob_id, DATA, code, payload, len(plaintext), used)
    name, pack = packer.finish()
    config = Config(id="0123456789abcdef" * 4, created="2026-11-22T09:00:00+00:00", dictionary_size=2048,
                    chunking=make_config().chunking, group_size=0)
    return {
        "about": ("A compression dictionary (sealed object, magic SRDW, shared-object key, stored at 'path') "
                  "and a data pack holding one blob compressed with it (entry.dictionary = its id). "
                  "Fields derived from zstd output: zstd_frame, bytes, the payload, the pack bytes and name."),
        "zstd": ZSTD_VERSIONS,
        "master_secret": H(MASTER_SECRET),
        "config_json": json.loads(config.encode()),
        "dictionary": {"content": H(content), "id_input": H(dictionary._ID_DOMAIN + content),
                       "id": dict_id, "path": dictionary.dictionary_path(dict_id), "magic": "SRDW",
                       "salt": H(SALT_DICTIONARY),
                       "shared_key": H(blake3.blake3(SALT_DICTIONARY, key=master.shared_root).digest()),
                       "zstd_frame": H(frame), "bytes": H(data)},
        "blob": {"plaintext": H(plaintext), "id": H(blob_id), "compression": code, "dictionary": used,
                 "payload": H(payload), "aad": H(blob_aad(blob_id, DATA, code, used)), "offset": entry.offset,
                 "length": entry.length},
        "pack": {"salt": H(SALT_DICTIONARY_PACK), "name": name, "bytes": H(pack)},
    }


def config_vector(master: MasterKey, zstd: _Zstd) -> dict:
    config = make_config()
    with zstd.sealing():
        data = seal_config(master, config, salt=SALT_CONFIG)
    return {"about": "A config with the default settings.", "zstd": ZSTD_VERSIONS,
            "master_secret": H(MASTER_SECRET), "json": json.loads(config.encode()),
            "sealed": _sealed_vector(master, sealed.MAGIC_CONFIG, SALT_CONFIG, config.encode(), data)}


def lock_payload() -> bytes:
    """What Lock._write stores (it has no separate encoder): asdict(LockInfo) without 'name'."""
    doc = asdict(LockInfo(hostname="host", pid=4242, username="alice", time="2026-11-22T09:30:00.5+00:00",
                          exclusive=False))
    del doc["name"]
    return json.dumps(doc).encode()


def lock_vector(master: MasterKey, zstd: _Zstd) -> dict:
    payload = lock_payload()
    with zstd.sealing():
        data = sealed.seal(master, sealed.MAGIC_LOCK, payload, salt=SALT_LOCK)
    return {"about": "A shared lock (stored as locks/<random 64 hex>, so it has no content name).",
            "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET), "json": json.loads(payload),
            "sealed": _sealed_vector(master, sealed.MAGIC_LOCK, SALT_LOCK, payload, data)}


def hold_vector(master: MasterKey, zstd: _Zstd, snapshot: dict) -> dict:
    from strongroom.commands.hold import MAGIC_HOLD, Hold, encode_hold
    hold = Hold(snapshot=snapshot["sealed"]["name"], reason="litigation hold, case 2026-17",
                time="2026-11-22T11:00:00+00:00", hostname="host", username="compliance")
    payload = encode_hold(hold)
    with zstd.sealing():
        data = sealed.seal(master, MAGIC_HOLD, payload, salt=SALT_HOLD)
    return {"about": "A legal hold on the snapshot of snapshot.json, stored as holds/<that snapshot's id> (§17.1).",
            "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET), "json": json.loads(payload),
            "sealed": _sealed_vector(master, MAGIC_HOLD, SALT_HOLD, payload, data)}


def keyfile_vector(master: MasterKey) -> dict:
    info = KeyInfo(kind="full", created="2026-11-22T09:00:00+00:00", hostname="host", username="alice")
    data = create_key_file(master, PASSWORD, info, KDF, salt=SALT_KEY_FILE)
    kek = KDF.derive(PASSWORD, SALT_KEY_FILE)
    return {"about": "A key file (UTF-8 JSON; no zstd). kek = Argon2id(password, salt).",
            "password": PASSWORD.decode(), "kdf": asdict(KDF), "salt": H(SALT_KEY_FILE), "kek": H(kek),
            "aad": H(KEY_AAD), "master_secret": H(MASTER_SECRET),
            "sealed_master": H(base64.b64decode(json.loads(data)["master"])),
            "bytes": H(data), "text": data.decode(), "name": "keys/" + blake3.blake3(data).hexdigest()}


SALT_SHARED_INDEX = b"\x25" * 32
SALT_WRITER_KEY_FILE = b"\x32" * 16
SALT_SIGNING_KEY_FILE = b"\x33" * 16
SEED_FULL_SIGNER = b"\x41" * 32
SEED_WRITER_SIGNER = b"\x42" * 32
EPHEMERAL_PACK = b"\x51" * 32
EPHEMERAL_SNAPSHOT = b"\x52" * 32
EPHEMERAL_LOG = b"\x53" * 32


def _x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _box_vector(master: MasterKey, data: bytes, ephemeral: bytes, magic: bytes, header: bytes) -> dict:
    recipient_private = blake3.blake3(MASTER_SECRET, derive_key_context=master_mod.CONTEXT_X25519).digest()
    eph_public = _x25519_public(ephemeral)
    shared = X25519PrivateKey.from_private_bytes(recipient_private).exchange(X25519PublicKey.from_public_bytes(eph_public))
    key = box_key(CONTEXT_OBJECT_BOX, shared, eph_public, master.recipient_public)
    body_at = boxed.PREFIX_SIZE + len(header) + 32
    plain = Cipher(key).open(ZERO_NONCE, data[body_at:-64], data[:body_at], "vector")
    return {"magic": magic.decode(), "header": H(header), "ephemeral_private": H(ephemeral),
            "ephemeral_public": H(eph_public), "x25519_shared": H(shared), "box_key": H(key),
            "zstd_frame": H(plain), "zstd_input": H(compression.decompress_frame(plain, 1 << 20, "vector")),
            "signature": H(data[-64:]), "bytes": H(data), "name_hash": blake3.blake3(data).hexdigest()}


def access_vector(master: MasterKey, zstd: _Zstd) -> dict:
    """Keys and access (§16): derived keys, shared objects, both key-file kinds, an X25519 pack
    envelope, and boxed (signed, public-key encrypted) snapshot and log entry."""
    config = make_config()
    writer = WriterKey.from_master(master, config.encode())
    full_signer = Signer.for_master(master, SEED_FULL_SIGNER, KIND_FULL)
    writer_signer = Signer.for_master(master, SEED_WRITER_SIGNER, KIND_WRITE_ONLY)
    with zstd.sealing():
        shared_index = seal_index(master, [], salt=SALT_SHARED_INDEX)
    info = KeyInfo(kind="write-only", created="2026-11-22T09:00:00+00:00", hostname="backup-host", username="svc")
    writer_file = create_writer_key_file(writer, SEED_WRITER_SIGNER, writer_signer.info.certificate, PASSWORD, info,
                                         KDF, salt=SALT_WRITER_KEY_FILE)
    full_file = create_key_file(master, PASSWORD, KeyInfo("full", "2026-11-22T09:00:00+00:00", "host", "alice"), KDF,
                                salt=SALT_SIGNING_KEY_FILE, signing_seed=SEED_FULL_SIGNER)
    blob = b"written by a write-only key"
    packer = PackWriter(writer, ephemeral_private=EPHEMERAL_PACK)
    packer.add(writer.blob_id(blob), DATA, compression.NONE, blob, len(blob))
    pack_name, pack_bytes = packer.finish()
    recipient_private = blake3.blake3(MASTER_SECRET, derive_key_context=master_mod.CONTEXT_X25519).digest()
    pack_shared = X25519PrivateKey.from_private_bytes(recipient_private).exchange(
        X25519PublicKey.from_public_bytes(_x25519_public(EPHEMERAL_PACK)))
    snap = make_snapshot("ab" * 32)
    link = ChainLink(group_tag(master, snap.hostname, snap.paths), 1, "cd" * 32)
    log_doc = {"added": ["snapshots/" + "ef" * 32], "args": {"paths": snap.paths}, "command": "backup",
               "host": "backup-host", "key": "01" * 32, "removed": [], "result": "ok",
               "time": "2026-11-22T10:00:01+00:00", "user": "svc"}
    log_payload = json.dumps(log_doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    with zstd.sealing():
        snap_bytes = boxed.seal_boxed(master.recipient_public, writer_signer, boxed.MAGIC_SNAPSHOT, link.encode(),
                                      snap.encode(), ephemeral_private=EPHEMERAL_SNAPSHOT)
        log_bytes = boxed.seal_boxed(master.recipient_public, full_signer, boxed.MAGIC_LOG,
                                     log_header(3, ["99" * 32]), log_payload, ephemeral_private=EPHEMERAL_LOG)
    frame = master.shared_cipher(SALT_SHARED_INDEX).open(ZERO_NONCE, shared_index[sealed.HEADER_SIZE:],
                                                         shared_index[:5], "vector")
    return {
        "about": "Keys and access (spec section 16): write-only key material, signatures, boxed objects.",
        "zstd": ZSTD_VERSIONS, "master_secret": H(MASTER_SECRET), "password": PASSWORD.decode(),
        "derived": {"shared_root": H(master.shared_root), "x25519_private": H(recipient_private),
                    "x25519_public": H(master.recipient_public),
                    "certify_key": H(blake3.blake3(MASTER_SECRET, derive_key_context=master_mod.CONTEXT_CERTIFY).digest()),
                    "legacy_signing_seed": H(master.legacy_signing_seed())},
        "signers": {"full": {"seed": H(SEED_FULL_SIGNER), "public": H(full_signer.info.public),
                             "certificate": H(full_signer.info.certificate)},
                    "write_only": {"seed": H(SEED_WRITER_SIGNER), "public": H(writer_signer.info.public),
                                   "certificate": H(writer_signer.info.certificate)},
                    "domain": H(SIGNATURE_DOMAIN)},
        "shared_index": {"salt": H(SALT_SHARED_INDEX), "bytes": H(shared_index), "zstd_frame": H(frame),
                         "zstd_input": H(encode_index([]))},
        "writer_key_file": {"aad": H(WRITER_AAD), "kdf": asdict(KDF), "salt": H(SALT_WRITER_KEY_FILE),
                            "config_payload": H(config.encode()), "text": writer_file.decode()},
        "full_key_file_with_signing_seed": {"aad": H(SIGNING_AAD), "salt": H(SALT_SIGNING_KEY_FILE),
                                            "text": full_file.decode()},
        "x25519_pack": {"ephemeral_private": H(EPHEMERAL_PACK), "ephemeral_public": H(_x25519_public(EPHEMERAL_PACK)),
                        "x25519_shared": H(pack_shared),
                        "pack_key": H(box_key(CONTEXT_PACK_BOX, pack_shared, _x25519_public(EPHEMERAL_PACK),
                                              master.recipient_public)),
                        "blob": H(blob), "blob_id": H(writer.blob_id(blob)), "name": pack_name, "bytes": H(pack_bytes)},
        "group_tag": {"hostname": snap.hostname, "paths": snap.paths, "tag": H(link.group)},
        "boxed_snapshot": {**_box_vector(master, snap_bytes, EPHEMERAL_SNAPSHOT, boxed.MAGIC_SNAPSHOT, link.encode()),
                           "json": json.loads(snap.encode()), "signer": "write_only"},
        "log_entry": {**_box_vector(master, log_bytes, EPHEMERAL_LOG, boxed.MAGIC_LOG, log_header(3, ["99" * 32])),
                      "json": log_doc, "seq": 3, "signer": "full"},
    }


def catalog_messages() -> list[Message]:
    """Messages for the catalogue vector: escapes, non-ASCII, optional fields, and enough of them
    (in two conversations) for several record-boundary chunks."""
    special = [
        Message("slack", "general", "1700000000.000100", "alice", 1_700_000_000_001, False,
                'quote " backslash \\ tab \t newline \n nul \x00 del \x7f ls \u2028 é 中文 🙂'),
        Message("slack", "general", "1700000000.000200", "bob", 1_700_000_000_002, True, "edited text",
                reply_to="1700000000.000100", attachments=("report.pdf", "chart.png")),
        Message("slack", "general", "1700000000.000200", "bob", 1_700_000_000_002, True, "edited text",
                reply_to="1700000000.000100", attachments=("report.pdf", "chart.png")),  # a duplicate: kept once
        Message("zulip", "engineering", "42", "carol", 1_699_999_999_000, False, "", topic="deploys"),
    ]
    bulk = [Message("slack", "random" if i % 3 else "general", f"17000{i:05d}.000000", f"user{i % 7}",
                    1_700_000_100_000 + i * 1000, i % 11 == 0, letters(f"catalog message {i}", 40 + i % 90).decode())
            for i in range(300)]
    return special + bulk


def catalog_vector(master: MasterKey, zstd: _Zstd) -> dict:
    """Message catalogue (§23): record lines, a part's header and record-boundary chunks, the
    content, context and part keys, and the catalogue tree holding the part."""
    from strongroom.messages.catalog_format import (PartHeader, chunk_records, content_key, encode_record,
                                                     member_key, part_key, record_sort_key)
    messages = catalog_messages()
    lines = sorted({(record_sort_key(m), encode_record(m)) for m in messages})
    lines = [line for _, line in lines]
    chunks = list(chunk_records(lines, master.blob_id))
    file_chunks = [xof("catalog export file chunk 1", 64), xof("catalog export file chunk 2", 64)]
    file_ids = [master.blob_id(c) for c in file_chunks]
    users_id = master.blob_id(b'[{"id":"U1","name":"alice"}]')
    content = content_key(master.blob_id, file_ids)
    users_content = content_key(master.blob_id, [users_id])
    context = master.blob_id(b"strongroom catalogue context\0" + b"export/users.json\0" + users_content)
    key = part_key(master.blob_id, "slack", "export/general/2023-11-14.json", content, context)
    member_text = b"".join(line + b"\n" for line in lines)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    member_stored = deflate.compress(member_text) + deflate.flush()
    member = member_key(master.blob_id, 8, zlib.crc32(member_text), len(member_text),
                        blake3.blake3(member_stored).digest())
    header = PartHeader("slack", "export/general/2023-11-14.json", key, len(lines)).encode()
    ids = [master.blob_id(header)] + [master.blob_id(c) for c in chunks]
    part = Node(name=b"2023-11-14.json", type=FILE, mode=0o600, size=len(header) + sum(map(len, chunks)),
                content=ids)
    general = encode_tree([part])
    export = encode_tree([Node(name=b"general", type=DIR, mode=0o700, subtree=master.blob_id(general))])
    backups = encode_tree([Node(name=b"export", type=DIR, mode=0o700, subtree=master.blob_id(export))])
    root = encode_tree([Node(name=b"backups", type=DIR, mode=0o700, subtree=master.blob_id(backups))])
    return {
        "about": ("Message catalogue (spec §23). 'messages' are read into 'record_lines' (sorted, duplicates "
                  "once), cut into 'chunks' (line counts and blob ids); 'keys' shows the content, context and "
                  "part keys for an export file with the given chunk ids and one context file users.json, of "
                  "an export backed up at /backups/export ('source' and the context path are relative to "
                  "/backups); 'keys.zip_member' the content key of a zip member holding the record lines, deflated, "
                  "from its stored data (§23.3); 'part' is the header line and the file node; 'trees' the "
                  "catalogue from its root."),
        "master_secret": H(MASTER_SECRET),
        "messages": [{"platform": m.platform, "conversation": m.conversation, "message_id": m.message_id,
                      "author": m.author, "time_ms": m.time_ms, "edited": m.edited, "text": m.text,
                      "reply_to": m.reply_to, "topic": m.topic, "attachments": list(m.attachments)}
                     for m in messages],
        "record_lines": [line.decode("utf-8") for line in lines],
        "chunks": [{"lines": c.count(b"\n"), "bytes": len(c), "id": H(master.blob_id(c))} for c in chunks],
        "keys": {"file_chunk_ids": [H(i) for i in file_ids], "content_key": H(content),
                 "context_file": {"path": "export/users.json", "chunk_ids": [H(users_id)],
                                  "content_key": H(users_content)},
                 "context_key": H(context), "platform": "slack", "export_root": "backups/export",
                 "source": "export/general/2023-11-14.json", "part_key": H(key),
                 "zip_member": {"method": 8, "crc32": zlib.crc32(member_text), "size": len(member_text),
                                "stored_data": H(member_stored), "content_key": H(member)}},
        "part": {"header": header.decode(), "header_id": H(ids[0]), "node": _node_json(part)},
        "version_1": catalog_version_1(messages[:3]),
        "trees": {"root": {"json": root.decode(), "id": H(master.blob_id(root))},
                  "backups": {"json": backups.decode(), "id": H(master.blob_id(backups))},
                  "export": {"json": export.decode(), "id": H(master.blob_id(export))},
                  "general": {"json": general.decode(), "id": H(master.blob_id(general))}},
        "snapshot_json": json.loads(Snapshot(time="2026-11-22T10:00:00+00:00", hostname="host", username="user",
                                             paths=["/backups/export"], tree="11" * 32,
                                             catalog=H(master.blob_id(root))).encode()),
    }


def catalog_version_1(messages: list[Message]) -> dict:
    """A version-1 part header and record lines (§23.1 as it was before §23.7: records carry the
    text hash ``h``), which readers still accept."""
    from strongroom.messages.catalog_format import text_hash
    lines = []
    for m in messages:
        doc = {"p": m.platform, "c": m.conversation, "i": m.message_id, "a": m.author, "t": m.time_ms,
               "e": m.edited, "h": text_hash(m.text), "x": m.text}
        for key, value in (("r", m.reply_to), ("o", m.topic), ("f", list(m.attachments))):
            if value:
                doc[key] = value
        lines.append(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    header = json.dumps({"catalog": 1, "key": "ab" * 32, "messages": len(lines), "platform": "slack",
                         "source": "export/general/2023-11-14.json"}, sort_keys=True, separators=(",", ":"))
    return {"header": header + "\n", "record_lines": lines}


def _vector_zip() -> bytes:
    """A small zip written field by field (no zipfile defaults that could change): a folder
    entry, a stored member and a member deflated by zlib at level 6, with an archive comment."""
    import struct
    import zlib
    members = [(b"chat/", b"", 0), (b"chat/readme.txt", b"hello, strongroom\n", 0),
               (b"chat/messages.jsonl", b"".join(b'{"id":%d,"user":"U%02d","text":"message number %d"}\n' % (i, i % 7, i)
                                                 for i in range(40)), 8)]
    out, central = bytearray(), bytearray()
    for name, data, method in members:
        if method:
            c = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
            stored = c.compress(data) + c.flush()
        else:
            stored = data
        crc, offset = zlib.crc32(data), len(out)
        fixed = (20, 0x800, method, 0x6000, 0x58A1, crc, len(stored), len(data), len(name))
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fixed, 0) + name + stored
        attr = (0o040755 if name.endswith(b"/") else 0o100644) << 16
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 0x0314, *fixed, 0, 0, 0, 0, attr,
                               offset) + name
    comment = b"strongroom vector"
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out),
                      len(comment)) + comment
    return bytes(out + central + end)


def archive_vector(master: MasterKey) -> dict:
    """An archive node for _vector_zip(), with every blob it names (plaintexts; packs are as in pack.json)."""
    import tempfile
    import zlib
    from strongroom.archives.store import store_archive
    from strongroom.archives.format import decode_layout
    blobs: dict[bytes, bytes] = {}

    class Sink:
        def store(self, stream, what):  # every stream here is small: one chunk each
            data = stream.read(1 << 20)
            if not data:
                return [], [], 0
            blobs[master.blob_id(data)] = data
            return [master.blob_id(data)], [], len(data)

        def add_tree(self, data):
            blobs[master.blob_id(data)] = data
            return master.blob_id(data)

    data = _vector_zip()
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        node = Node(name=b"export.zip", type=FILE, mode=0o644, mtime_ns=1795000000000000000, size=len(data))
        store_archive(f.fileno(), node, "zip", Sink())
    tree = encode_tree([node])
    layout = [{"id": H(i), "encoded": H(blobs[i]),
               "segments": len(decode_layout(blobs[i], "vector"))} for i in node.archive.layout]
    skeleton = b"".join(blobs[i] for i in node.archive.skeleton)
    return {
        "about": ("A zip (folder entry, stored member, member deflated by zlib level 6) stored member-wise (§21). "
                  "'blobs' holds the plaintext of every blob the node names, by id; a reader rebuilds 'zip' from "
                  "the layout, the skeleton and the member chunks. The deflate output depends on zlib: 'zlib' "
                  "records the version used."),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "zip": H(data),
        "tree": {"encoded": H(tree), "id": H(master.blob_id(tree)), "node": json.loads(tree)["nodes"][0]},
        "layout": layout,
        "skeleton": H(skeleton),
        "blobs": {H(k): H(v) for k, v in sorted(blobs.items())},
    }


def record_text(kind: str, n: int) -> bytes:
    """Chat-export-like text for the record-boundary vectors: ``n`` messages whose texts are
    letters(f"record {kind} {i}", 20 + (37 * i) % 300), as JSONL, as a pretty-printed JSON
    document (messages at indent 4, reactions at indent 8) or as chat lines."""
    out = []
    for i in range(n):
        text = letters(f"record {kind} {i}", 20 + (37 * i) % 300).replace(b"\n", b" ")
        if kind == "jsonl":
            out.append(b'{"id":%d,"text":"%s"}\n' % (i, text))
        elif kind == "pretty":
            reactions = b"".join(b'        {\n          "emoji": "%d"\n        },\n' % j for j in range(i % 3))
            out.append(b'    {\n      "id": %d,\n      "reactions": [\n%s      ],\n      "text": "%s"\n    },\n'
                       % (i, reactions, text))
        else:
            out.append(b"11/%02d/26, 9:%02d AM - user%d: %s\n" % (i % 28 + 1, i % 60, i % 7, text))
    body = b"".join(out)
    return b'{\n  "name": "vectors",\n  "messages": [\n' + body + b"  ]\n}\n" if kind == "pretty" else body


def _record_case(kind: str, n: int, params: ChunkerParams) -> dict:
    data = record_text(kind, n)
    ends, pos = [], 0
    for chunk in chunk_stream(io.BytesIO(data), params, records=True):
        pos += len(chunk)
        ends.append(pos)
    plain = [0]
    for chunk in chunk_stream(io.BytesIO(data), params):
        plain.append(plain[-1] + len(chunk))
    return {"kind": kind, "messages": n, "length": len(data), "input_blake3": blake3.blake3(data).hexdigest(),
            "params": asdict(params), "boundaries": ends, "plain_boundaries": plain[1:]}


def record_chunking_vector() -> dict:
    small = ChunkerParams(256, 1024, 4096)
    return {"about": ("Chunk boundaries with record boundaries on (§7.4; config chunking.records) for text made "
                      "by record_text() in generate.py; plain_boundaries are the §7.2 cuts of the same input."),
            "cases": [_record_case("jsonl", 400, small), _record_case("pretty", 300, small),
                      _record_case("lines", 400, small), _record_case("pretty", 4000, ChunkingProfiles().text)]}


def content_hash_vector(master: MasterKey) -> dict:
    """§12 content_hash: the keyed hash of a file's whole content, on a file node of a tree."""
    blobs = data_blobs()
    content = b"".join(blobs)
    digest = blake3.blake3(content).digest()
    node = Node(name=b"hello.txt", type=FILE, mode=0o644, size=len(content),
                content=[master.blob_id(b) for b in blobs], content_hash=digest)
    tree = encode_tree([node])
    return {"about": ("A file of the two blobs of pack.json: its content_hash (plain BLAKE3-256 of the whole "
                      "content), the empty file's, and a tree holding the node (§12)."),
            "master_secret": H(MASTER_SECRET), "content": H(content), "content_hash": H(digest),
            "empty_content_hash": H(blake3.blake3(b"").digest()),
            "tree": {"text": tree.decode(), "id": H(master.blob_id(tree))}}


def generate(replay: dict | None = None) -> dict[str, dict]:
    """Every vector file's content, built with the code (zstd replayed from ``replay`` if given)."""
    master = MasterKey(MASTER_SECRET)
    zstd = _Zstd(replay)
    out = {
        "keys.json": keys_vector(master),
        "chunk_ids.json": chunk_ids_vector(master),
        "chunking.json": chunking_vector(),
        "classify.json": classify_vector(),
        "compression.json": compression_vector(zstd),
        "pack.json": pack_vector(master, zstd),
        "tree.json": tree_vector(master, zstd),
    }
    out["index.json"] = index_vector(master, zstd, out["pack.json"], out["tree.json"])
    out["snapshot.json"] = snapshot_vector(master, zstd, out["tree.json"])
    out["config.json"] = config_vector(master, zstd)
    out["lock.json"] = lock_vector(master, zstd)
    out["hold.json"] = hold_vector(master, zstd, out["snapshot.json"])
    out["keyfile.json"] = keyfile_vector(master)
    out["access.json"] = access_vector(master, zstd)
    out["dictionary.json"] = dictionary_vector(master, zstd)
    out["groups.json"] = groups_vector(master, zstd)
    out["catalog.json"] = catalog_vector(master, zstd)
    out["archive.json"] = archive_vector(master)
    out["content_hash.json"] = content_hash_vector(master)
    out["record_chunking.json"] = record_chunking_vector()
    return out


def dump(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def load_stored() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text("utf-8")) for p in sorted(VECTOR_DIR.glob("*.json"))}


def main(argv: list[str]) -> int:
    vectors = generate()
    if "--check" in argv:
        stale = [n for n, doc in vectors.items()
                 if not (VECTOR_DIR / n).exists() or (VECTOR_DIR / n).read_text("utf-8") != dump(doc)]
        print("stale vectors: " + ", ".join(stale) if stale else "vectors up to date")
        return 1 if stale else 0
    for name, doc in vectors.items():
        (VECTOR_DIR / name).write_text(dump(doc), "utf-8")
    print(f"wrote {len(vectors)} files to {VECTOR_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
