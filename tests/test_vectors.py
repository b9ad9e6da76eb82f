"""The repository-format test vectors in spec/vectors/ against the code and the spec.

(a) every vector is regenerated with the code and compared byte for byte: exactly when the
    installed zstd is the one that made them, and always with the recorded zstd frames fed back
    in, which pins every byte zstd does not produce;
(b) every stored vector is decoded with the reader functions, by a small independent reader
    written from spec/repository-format.md, and as a whole repository opened by Repository;
(c) a flipped byte anywhere in an encrypted object is rejected.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import struct
import sys
from pathlib import Path

import blake3
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from strongroom.chunker import ChunkerParams, chunk_stream, classify
from strongroom.compression import decompress_blob
from strongroom.config import open_config
from strongroom.crypto import sealed
from strongroom.crypto.aead import ZERO_NONCE, Cipher
from strongroom.crypto.keyfile import KEY_AAD, open_key_file, parse_key_file
from strongroom.crypto.master import MasterKey
from strongroom.errors import IntegrityError, StrongroomError, UnsupportedFormat
from strongroom.indexfile import decode_index, open_index
from strongroom.pack import TRAILER, open_blob, pack_cipher, pack_name, parse_header
from strongroom.snapshot import Snapshot
from strongroom.tree import Node, decode_chunk_list, decode_tree, encode_tree

ROOT = Path(__file__).resolve().parents[1]
VECTOR_DIR = ROOT / "spec" / "vectors"
SPEC = ROOT / "spec" / "repository-format.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("strongroom_vector_generator", VECTOR_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
STORED = gen.load_stored()
NAMES = sorted(STORED)
SECRET = bytes.fromhex(STORED["keys.json"]["master_secret"])
MASTER = MasterKey(SECRET)
SAME_ZSTD = all(STORED[n]["zstd"] == gen.ZSTD_VERSIONS for n in gen.ZSTD_DEPENDENT)
X = bytes.fromhex


def normalise(doc: dict) -> dict:
    return json.loads(gen.dump(doc))


@pytest.fixture(scope="module")
def fresh() -> dict[str, dict]:
    return {n: normalise(d) for n, d in gen.generate().items()}


@pytest.fixture(scope="module")
def replayed() -> dict[str, dict]:
    return {n: normalise(d) for n, d in gen.generate(replay=gen.replay_tables(STORED)).items()}


# -- (a) regeneration ------------------------------------------------------------------------------

def test_vector_files_are_exactly_the_generated_set(fresh):
    assert sorted(fresh) == NAMES
    assert set(gen.ZSTD_DEPENDENT) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_regenerated_exactly(name, fresh):
    if name in gen.ZSTD_DEPENDENT and STORED[name]["zstd"] != gen.ZSTD_VERSIONS:
        pytest.skip(f"vectors made with zstd {STORED[name]['zstd']}, installed {gen.ZSTD_VERSIONS}: zstd output "
                    "may differ (the decoded plaintext and every other byte are still compared)")
    assert fresh[name] == STORED[name]


@pytest.mark.parametrize("name", NAMES)
def test_regenerated_with_recorded_zstd_frames(name, replayed):
    """Every byte that zstd does not produce, compared whatever the installed zstd version."""
    got, want = dict(replayed[name]), dict(STORED[name])
    got.pop("zstd", None)
    want.pop("zstd", None)
    assert got == want


def test_fresh_zstd_output_decodes_to_the_recorded_plaintexts(fresh):
    """With any zstd version, the same plaintexts are compressed, and the new frames decode to them."""
    new, old = gen.replay_tables(fresh), gen.replay_tables(STORED)
    assert new["blobs"].keys() == old["blobs"].keys()
    for (plaintext, _level), (code, payload) in new["blobs"].items():
        assert decompress_blob(code, payload, len(plaintext), "fresh") == plaintext
    for payload, frame in new["frames"].items():
        assert zstandard.ZstdDecompressor().decompress(frame, max_output_size=1 << 20) == payload
    # The index payload names packs, whose bytes hold zstd output; the other payloads do not.
    for name in ("snapshot.json", "config.json", "lock.json"):
        assert fresh[name]["sealed"]["payload"] == STORED[name]["sealed"]["payload"]


def test_generator_check_mode_agrees(capsys):
    if not SAME_ZSTD:
        pytest.skip("the vectors were made with another zstd version")
    assert gen.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


# -- (b) decoding with the reader functions ---------------------------------------------------------

def test_keys():
    v = STORED["keys.json"]
    assert MASTER.id_key.hex() == v["id_key"]
    probe = (b"\x07" * 12, b"probe plaintext", b"probe aad")
    for item in v["pack_keys"]:
        assert Cipher(X(item["key"])).seal(*probe) == MASTER.pack_cipher(X(item["salt"])).seal(*probe)
    for item in v["object_keys"]:
        assert Cipher(X(item["key"])).seal(*probe) == MASTER.object_cipher(X(item["salt"])).seal(*probe)


def test_chunk_ids():
    for case in STORED["chunk_ids.json"]["cases"]:
        data = X(case["input"]) if "input" in case else gen.xof(case["xof_seed"], case["length"])
        assert MASTER.blob_id(data).hex() == case["id"]


def _chunking_input(case: dict) -> bytes:
    if case["transform"] == "letters":
        return gen.letters(case["seed"], case["length"])
    return gen.xof(case["seed"], case["length"])


@pytest.mark.parametrize("index", range(len(STORED["chunking.json"]["cases"])))
def test_chunk_boundaries_stream_like_a_backup(index):
    """Smallest allowed buffer and an 8192-byte sniffed prefix, as the backup reads files."""
    case = STORED["chunking.json"]["cases"][index]
    data = _chunking_input(case)
    assert blake3.blake3(data).hexdigest() == case["input_blake3"]
    params = ChunkerParams(**case["params"])
    stream = io.BytesIO(data)
    head = stream.read(8192)
    ends, pos = [], 0
    # (chunk_stream cannot take a prefix longer than its buffer, hence the 8192 floor.)
    buffer = bytearray(max(2 * params.max_size, len(head)))
    for chunk in chunk_stream(stream, params, buffer=buffer, prefix=head):
        assert 0 < len(chunk) <= params.max_size
        pos += len(chunk)
        ends.append(pos)
    assert ends == case["boundaries"]
    assert all(b - a >= params.min_size for a, b in zip([0] + ends, ends[:-1]))


def test_classify():
    for case in STORED["classify.json"]["cases"]:
        head = b"".join(X(p) * n for p, n in case["parts"])
        assert len(head) == case["length"]
        assert classify(head) == case["class"], case["note"]


def test_compression():
    for case in STORED["compression.json"]["cases"]:
        assert case["code"] in (0, 1)
        data = X(case["input"])
        assert decompress_blob(case["code"], X(case["payload"]), len(data), case["note"]) == data
        if case["code"] == 1:
            assert zstandard.frame_content_size(X(case["payload"])) == -1  # no content size recorded


def _check_pack(pack: dict) -> None:
    data = X(pack["bytes"])
    assert len(data) == pack["size"] and pack_name(data) == pack["name"]
    assert pack["path"] == f"data/{pack['name'][:2]}/{pack['name']}"
    envelope, entries = parse_header(MASTER, data[-1000:], len(data), "vector")
    assert envelope.hex() == pack["envelope"]
    cipher = pack_cipher(MASTER, envelope, "vector")
    assert len(entries) == len(pack["blobs"])
    for e, b in zip(entries, pack["blobs"]):
        assert (e.id.hex(), e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length) == (
            b["id"], b["type"], b["compression"], b["dictionary"], b["offset"], b["length"], b["raw_length"])
        payload = open_blob(cipher, e, data[e.offset:e.offset + e.length], "vector")
        assert payload.hex() == b["payload"]
        plaintext = decompress_blob(e.compression, payload, e.raw_length, "vector")
        assert plaintext.hex() == b["plaintext"] and MASTER.blob_id(plaintext) == e.id


def test_pack():
    v = STORED["pack.json"]["pack"]
    _check_pack(v)
    assert [b["type"] for b in v["blobs"]] == [0, 0]
    assert sorted(b["compression"] for b in v["blobs"]) == [0, 1]


def _expected_nodes(described: list[dict]) -> list[Node]:
    def opt(value):
        return None if value is None else X(value)
    nodes = [Node(name=X(d["name"]), type=d["type"], mode=d["mode"], uid=d["uid"], gid=d["gid"],
                  mtime_ns=d["mtime_ns"], ctime_ns=d["ctime_ns"], size=d["size"], inode=d["inode"],
                  device=d["device"], user=d["user"], group=d["group"], content=[X(c) for c in d["content"]],
                  content_lists=[X(c) for c in d["content_lists"]], subtree=opt(d["subtree"]),
                  target=opt(d["target"])) for d in described]
    return sorted(nodes, key=lambda n: n.name)


def test_tree():
    v = STORED["tree.json"]
    encoded = X(v["root"]["encoded"])
    assert encoded.decode("utf-8") == v["root"]["text"]
    nodes = decode_tree(encoded, "vector")
    assert nodes == _expected_nodes(v["root"]["nodes"])
    assert encode_tree(list(reversed(nodes))) == encoded  # canonical whatever the input order
    assert MASTER.blob_id(encoded).hex() == v["root"]["id"]
    assert decode_tree(X(v["empty"]["encoded"]), "vector") == []
    ids = decode_chunk_list(X(v["chunk_list"]["encoded"]), "vector")
    assert [i.hex() for i in ids] == v["chunk_list"]["ids"]
    kinds = {(n.type, n.name.isascii()) for n in nodes}
    assert {("file", True), ("dir", True), ("symlink", True), ("symlink", False)} <= kinds
    assert any(n.name == b"caf\xe9" for n in nodes)  # not UTF-8: stored as name_b64
    assert '"name_b64":"Y2Fm6Q=="' in v["root"]["text"]
    _check_pack(v["pack"])
    assert [b["type"] for b in v["pack"]["blobs"]] == [1, 1, 1]


def test_content_hash():
    v = STORED["content_hash.json"]
    assert blake3.blake3(X(v["content"])).hexdigest() == v["content_hash"]
    assert v["empty_content_hash"] == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # b3sum
    (node,) = decode_tree(v["tree"]["text"].encode(), "vector")
    assert node.content_hash == X(v["content_hash"])
    assert node.size == len(X(v["content"]))
    assert f'"content_hash":"{v["content_hash"]}"' in v["tree"]["text"]
    assert MASTER.blob_id(v["tree"]["text"].encode()).hex() == v["tree"]["id"]


def test_index():
    v = STORED["index.json"]
    packs, supersedes = open_index(MASTER, X(v["sealed"]["bytes"]), "vector")
    assert supersedes == v["supersedes"]
    assert [p.name for p in packs] == [STORED["pack.json"]["pack"]["name"], STORED["tree.json"]["pack"]["name"]]
    for p, want in zip(packs, v["packs"]):
        assert (p.name, p.size, p.envelope.hex()) == (want["name"], want["size"], want["envelope"])
        assert [[e.id.hex(), e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length]
                for e in p.entries] == want["entries"]
    assert decode_index(X(v["sealed"]["payload"]), "vector") == (packs, supersedes)


def _unsealed(name: str, magic: bytes) -> bytes:
    obj = STORED[name]["sealed"]
    data = X(obj["bytes"])
    assert blake3.blake3(data).hexdigest() == obj["name"]
    payload = sealed.unseal(MASTER, magic, data, name)
    assert payload.hex() == obj["payload"]
    assert zstandard.ZstdDecompressor().decompress(X(obj["zstd_frame"]), max_output_size=1 << 20) == payload
    return payload


def test_snapshot():
    v = STORED["snapshot.json"]
    payload = _unsealed("snapshot.json", sealed.MAGIC_SNAPSHOT)
    snap = Snapshot.decode(payload, v["sealed"]["name"], "vector")
    assert snap.id == v["sealed"]["name"]
    assert snap.tree == STORED["tree.json"]["root"]["id"] == v["json"]["tree"]
    assert (snap.time, snap.hostname, snap.username, snap.paths, snap.tags, snap.parent, snap.program_version) == (
        v["json"]["time"], v["json"]["hostname"], v["json"]["username"], v["json"]["paths"], v["json"]["tags"],
        v["json"]["parent"], v["json"]["program_version"])
    assert snap.summary.duration_s == 1.25 and snap.summary.files_new == 3
    assert snap.encode() == payload
    assert json.loads(payload)["version"] == 1


def test_config():
    v = STORED["config.json"]
    _unsealed("config.json", sealed.MAGIC_CONFIG)
    config = open_config(MASTER, X(v["sealed"]["bytes"]))
    assert config.id == v["json"]["id"] and config.created == v["json"]["created"]
    assert config.chunking.to_json() == v["json"]["chunking"]
    assert (config.compression_level, config.pack_size) == (3, 16 * 1024 * 1024)
    assert config.encode().hex() == v["sealed"]["payload"]


def test_lock():
    payload = _unsealed("lock.json", sealed.MAGIC_LOCK)
    assert json.loads(payload) == STORED["lock.json"]["json"]
    assert set(json.loads(payload)) == {"hostname", "pid", "username", "time", "exclusive"}


def test_hold():
    from strongroom.commands.hold import MAGIC_HOLD
    v = STORED["hold.json"]
    payload = _unsealed("hold.json", MAGIC_HOLD)
    doc = json.loads(payload)
    assert doc == v["json"] and doc["snapshot"] == STORED["snapshot.json"]["sealed"]["name"]
    assert payload == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert set(doc) == {"snapshot", "reason", "time", "hostname", "username"}


def test_key_file():
    v = STORED["keyfile.json"]
    data = X(v["bytes"])
    assert data.decode() == v["text"] and data.endswith(b"\n")
    master = open_key_file(data, v["password"].encode(), "vector")
    assert master is not None and master.secret == SECRET
    assert open_key_file(data, b"wrong password", "vector") is None
    info, params, salt, sealed_master = parse_key_file(data, "vector")
    assert (info.kind, params.memory_kib, params.iterations, params.lanes) == ("full", 64, 1, 1)
    assert salt.hex() == v["salt"] and sealed_master.hex() == v["sealed_master"] and len(sealed_master) == 48
    assert params.derive(v["password"].encode(), salt).hex() == v["kek"]


def test_whole_repository_from_vectors(tmp_path):
    """The vectors form a small complete repository; the normal code opens and checks it."""
    from strongroom.commands.check import run_check
    from strongroom.repository import Repository
    from strongroom.storage import LocalStorage

    storage = LocalStorage(tmp_path / "repo")
    storage.create()
    storage.store("config", X(STORED["config.json"]["sealed"]["bytes"]))
    storage.store(STORED["keyfile.json"]["name"], X(STORED["keyfile.json"]["bytes"]))
    for name in ("pack.json", "tree.json"):
        storage.store(STORED[name]["pack"]["path"], X(STORED[name]["pack"]["bytes"]))
    storage.store("index/" + STORED["index.json"]["sealed"]["name"], X(STORED["index.json"]["sealed"]["bytes"]))
    snap_id = STORED["snapshot.json"]["sealed"]["name"]
    storage.store("snapshots/" + snap_id, X(STORED["snapshot.json"]["sealed"]["bytes"]))
    with Repository.open(storage, STORED["keyfile.json"]["password"].encode(),
                         cache_root=str(tmp_path / "cache")) as repo:
        snap = repo.find_snapshot("latest")
        assert snap.id == snap_id
        nodes = {n.name: n for n in repo.load_tree(bytes.fromhex(snap.tree))}
        content = b"".join(gen.data_blobs())
        for name in (b"hello.txt", b"big.bin"):
            assert b"".join(repo.load_blob(i) for i in repo.file_chunks(nodes[name])) == content
        assert repo.load_tree(nodes[b"docs"].subtree) == []
        result = run_check(repo)
        assert result.ok, result.errors
        assert (result.snapshots, result.trees, result.packs) == (1, 2, 2)


# -- (b) decoding with an independent reader written from the spec --------------------------------

CONTEXT_CHUNK_ID = "strongroom 2026-11-22 v1 chunk id key"
CONTEXT_PACK = "strongroom 2026-11-22 v1 pack key root"
CONTEXT_OBJECT = "strongroom 2026-11-22 v1 object key root"


def spec_subkey(context: str, salt: bytes | None = None) -> bytes:
    root = blake3.blake3(SECRET, derive_key_context=context).digest()
    return root if salt is None else blake3.blake3(salt, key=root).digest()


def spec_unseal(magic: bytes, data: bytes) -> bytes:
    assert data[:4] == magic and data[4] == 1
    key = spec_subkey(CONTEXT_OBJECT, data[5:37])
    frame = AESGCM(key).decrypt(bytes(12), data[37:], data[:5])
    return zstandard.ZstdDecompressor().decompress(frame, max_output_size=1 << 30)


def spec_read_pack(data: bytes) -> list[tuple]:
    env_len, header_len, version, magic = struct.unpack("<IIB4s", data[-13:])
    assert (magic, version) == (b"SRPK", 1)
    envelope = data[len(data) - 13 - env_len:len(data) - 13]
    assert len(envelope) == 33 and envelope[0] == 0
    key = spec_subkey(CONTEXT_PACK, envelope[1:])
    header_start = len(data) - 13 - env_len - header_len
    header = AESGCM(key).decrypt(b"\xff" * 12, data[header_start:header_start + header_len], b"SRPH")
    (count,) = struct.unpack_from("<I", header)
    assert len(header) == 4 + 54 * count
    blobs, expected = [], 0
    for i in range(count):
        blob_id, btype, comp, dictionary, offset, length, raw_length = struct.unpack_from(
            "<32sBBIQII", header, 4 + 54 * i)
        assert offset == expected and dictionary == 0
        expected = offset + length
        aad = b"SRBL" + bytes([btype, comp]) + dictionary.to_bytes(4, "little") + blob_id
        plaintext = AESGCM(key).decrypt(offset.to_bytes(12, "big"), data[offset:offset + length], aad)
        if comp == 1:
            plaintext = zstandard.ZstdDecompressor().decompress(plaintext, max_output_size=raw_length)
        assert len(plaintext) == raw_length
        assert blake3.blake3(plaintext, key=spec_subkey(CONTEXT_CHUNK_ID)).digest() == blob_id
        blobs.append((blob_id.hex(), btype, plaintext.hex()))
    assert expected == header_start
    return blobs


def spec_decode_index(payload: bytes) -> tuple[list[str], list[tuple]]:
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from(fmt, payload, pos)
        pos += struct.calcsize(fmt)
        return values

    (n,) = take("<I")
    supersedes = [take("<32s")[0].hex() for _ in range(n)]
    packs = []
    for _ in range(take("<I")[0]):
        name, size, env_len = take("<32sQH")
        envelope = take(f"<{env_len}s")[0]
        entries = [take("<32sBBIQII") for _ in range(take("<I")[0])]
        packs.append((name.hex(), size, envelope.hex(), [[e[0].hex(), *e[1:]] for e in entries]))
    assert pos == len(payload)
    return supersedes, packs


def test_spec_reader_packs():
    for name in ("pack.json", "tree.json"):
        pack = STORED[name]["pack"]
        data = X(pack["bytes"])
        assert blake3.blake3(data).hexdigest() == pack["name"]
        assert spec_read_pack(data) == [(b["id"], b["type"], b["plaintext"]) for b in pack["blobs"]]


def test_spec_reader_sealed_objects():
    for name, magic in (("index.json", b"SRIX"), ("snapshot.json", b"SRSN"), ("config.json", b"SRCF"),
                        ("lock.json", b"SRLK")):
        assert spec_unseal(magic, X(STORED[name]["sealed"]["bytes"])).hex() == STORED[name]["sealed"]["payload"]
    v = STORED["index.json"]
    supersedes, packs = spec_decode_index(spec_unseal(b"SRIX", X(v["sealed"]["bytes"])))
    assert supersedes == v["supersedes"]
    assert packs == [(p["name"], p["size"], p["envelope"], p["entries"]) for p in v["packs"]]
    assert [p[0] for p in packs] == [STORED["pack.json"]["pack"]["name"], STORED["tree.json"]["pack"]["name"]]


def test_spec_reader_key_file():
    v = STORED["keyfile.json"]
    doc = json.loads(X(v["bytes"]))
    assert doc["version"] == 1 and doc["kdf"]["algorithm"] == "argon2id"
    kek = Argon2id(salt=base64.b64decode(doc["kdf"]["salt"]), length=32, iterations=doc["kdf"]["iterations"],
                   lanes=doc["kdf"]["lanes"], memory_cost=doc["kdf"]["memory_kib"]).derive(v["password"].encode())
    secret = AESGCM(kek).decrypt(bytes(12), base64.b64decode(doc["master"]), b"strongroom key file v1")
    assert secret == SECRET


def test_spec_reader_tree_and_chunk_list():
    v = STORED["tree.json"]
    doc = json.loads(X(v["root"]["encoded"]))
    names = [n["name"].encode() if "name" in n else base64.b64decode(n["name_b64"]) for n in doc["nodes"]]
    assert names == sorted(names) == [X(n["name"]) for n in _sorted_described(v["root"]["nodes"])]
    assert json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == X(
        v["root"]["encoded"])
    assert json.loads(X(v["chunk_list"]["encoded"])) == {"chunks": v["chunk_list"]["ids"]}


def _sorted_described(described: list[dict]) -> list[dict]:
    return sorted(described, key=lambda d: X(d["name"]))


def _spec_gear_table() -> list[int]:
    text = SPEC.read_text("utf-8")
    match = re.search(r"<!-- gear-table -->\s*```text\n(.*?)```", text, re.S)
    assert match, "the spec's gear table block is missing"
    return [int(word, 16) for word in match.group(1).split()]


def spec_chunk(data: bytes, min_size: int, avg_size: int, max_size: int) -> list[int]:
    """The cut-point algorithm exactly as spec/repository-format.md words it."""
    gear = _spec_gear_table()
    bits = round(__import__("math").log2(avg_size))
    mask_s, mask_l = (1 << (bits + 1)) - 1, (1 << (bits - 1)) - 1
    center = avg_size - min(avg_size, min_size + (min_size + 1) // 2)
    center = min(center, max_size)
    ends, start = [], 0
    while start < len(data):
        remaining = len(data) - start
        i, h, cut = min(min_size, remaining), 0, None
        while i < min(center, remaining):
            h = ((h >> 1) + gear[data[start + i]]) & 0xFFFFFFFF
            i += 1
            if h & mask_s == 0:
                cut = i
                break
        if cut is None:
            while i < min(max_size, remaining):
                h = ((h >> 1) + gear[data[start + i]]) & 0xFFFFFFFF
                i += 1
                if h & mask_l == 0:
                    cut = i
                    break
        start += cut if cut is not None else i
        ends.append(start)
    return ends


def test_spec_gear_table_is_fastcdc_17():
    from fastcdc.fastcdc_py import GEAR
    assert _spec_gear_table() == list(GEAR)


@pytest.mark.parametrize("index", [0, 3, 4])
def test_spec_chunking_algorithm(index):
    case = STORED["chunking.json"]["cases"][index]
    p = case["params"]
    assert spec_chunk(_chunking_input(case), p["min_size"], p["avg_size"], p["max_size"]) == case["boundaries"]


def spec_record_chunk(data: bytes, min_size: int, avg_size: int, max_size: int) -> list[int]:
    """§7.4 exactly as worded: each chunk's §7.2 cut, moved back to a record boundary."""
    ends, start = [], 0
    while start < len(data):
        window = data[start:start + max_size]
        c = start + spec_chunk(window, min_size, avg_size, max_size)[0]
        low, stop = start + min_size, c
        if c > low:
            found = False
            for k in range(17):
                opener = b"\n" + b" " * k + b"{"
                hits = [i for i in range(low - 1, c) if i + k + 2 <= c and data[i:i + k + 2] == opener]
                if hits:
                    stop, found = hits[-1] + 1, True
                    break
            if not found:
                hits = [i for i in range(low - 1, c) if data[i] == 0x0A]
                stop = hits[-1] + 1 if hits else c
        ends.append(stop)
        start = stop
    return ends


def _record_input(case: dict) -> bytes:
    data = gen.record_text(case["kind"], case["messages"])
    assert len(data) == case["length"] and blake3.blake3(data).hexdigest() == case["input_blake3"]
    return data


@pytest.mark.parametrize("index", range(4))
def test_record_chunking_streams_like_a_backup(index):
    case = STORED["record_chunking.json"]["cases"][index]
    data, params = _record_input(case), ChunkerParams(**case["params"])
    stream = io.BytesIO(data)
    head = stream.read(8192)
    ends, pos = [], 0
    for chunk in chunk_stream(stream, params, buffer=bytearray(max(2 * params.max_size, len(head))), prefix=head,
                              records=True):
        assert len(chunk) <= params.max_size
        pos += len(chunk)
        ends.append(pos)
    assert ends == case["boundaries"]
    assert all(b - a >= params.min_size for a, b in zip([0] + ends, ends[:-1]))
    # Every cut is at a line start, unless the chunk had no line feed from offset min - 1 on.
    for start, end in zip([0] + ends, ends[:-1]):
        assert data[end - 1] == 0x0A or data.find(b"\n", start + params.min_size - 1, end) == -1
    plain = [c for c in chunk_stream(io.BytesIO(data), params)]
    assert [sum(map(len, plain[:i + 1])) for i in range(len(plain))] == case["plain_boundaries"]


@pytest.mark.parametrize("index", range(3))
def test_spec_record_chunking_algorithm(index):
    case = STORED["record_chunking.json"]["cases"][index]
    p = case["params"]
    assert spec_record_chunk(_record_input(case), p["min_size"], p["avg_size"], p["max_size"]) == case["boundaries"]


def test_record_cuts_fall_before_the_shallowest_objects():
    # Pretty JSON, messages at indent 4, reactions at 8; the default text profile's chunks always
    # hold a message start beyond min_size, so every chunk after the first starts with a message.
    case = STORED["record_chunking.json"]["cases"][3]
    data = _record_input(case)
    starts = case["boundaries"][:-1]
    assert len(starts) == 55 and all(data.startswith(b"    {\n", s) for s in starts)
    plain = case["plain_boundaries"][:-1]
    assert sum(data.startswith(b"    {\n", s) for s in plain) < len(plain) // 4


# -- (c) tampering -----------------------------------------------------------------------------------

def _flipped(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


SEALED_READERS = {
    "index.json": lambda data: open_index(MASTER, data, "vector"),
    "config.json": lambda data: open_config(MASTER, data),
    "snapshot.json": lambda data: sealed.unseal(MASTER, sealed.MAGIC_SNAPSHOT, data, "vector"),
    "lock.json": lambda data: sealed.unseal(MASTER, sealed.MAGIC_LOCK, data, "vector"),
}


@pytest.mark.parametrize("name", sorted(SEALED_READERS))
def test_flipped_byte_in_sealed_object_is_rejected(name):
    data = X(STORED[name]["sealed"]["bytes"])
    read = SEALED_READERS[name]
    read(data)  # the intact object opens
    for i in range(len(data)):
        expected = UnsupportedFormat if i == 4 else IntegrityError  # byte 4: the format version
        with pytest.raises(expected):
            read(_flipped(data, i))
    with pytest.raises(IntegrityError):
        read(data[:-1])
    with pytest.raises(IntegrityError):
        read(data + b"\0")


@pytest.mark.parametrize("name", ["pack.json", "tree.json"])
def test_flipped_byte_in_pack_is_rejected(name):
    v = STORED[name]["pack"]
    data = X(v["bytes"])
    size = len(data)
    stored_entries = parse_header(MASTER, data, size, "vector")[1]
    cipher = pack_cipher(MASTER, X(v["envelope"]), "vector")
    data_end = stored_entries[-1].offset + stored_entries[-1].length
    env_len = len(X(v["envelope"]))
    # Trailer fields that name an unknown format when damaged: envelope length (a wrong length
    # is an unknown envelope), version; and the envelope's type byte.
    unsupported = set(range(size - TRAILER.size, size - TRAILER.size + 4)) | {size - 5, size - TRAILER.size - env_len}
    for i in range(size):
        bad = _flipped(data, i)
        assert pack_name(bad) != v["name"]
        if i < data_end:  # inside a blob: the blob fails, as read through the index
            entry = next(e for e in stored_entries if e.offset <= i < e.offset + e.length)
            with pytest.raises(IntegrityError):
                open_blob(cipher, entry, bad[entry.offset:entry.offset + entry.length], "vector")
        elif i in unsupported:
            with pytest.raises((UnsupportedFormat, IntegrityError)):
                parse_header(MASTER, bad, size, "vector")
        else:
            with pytest.raises(IntegrityError):
                parse_header(MASTER, bad, size, "vector")


def test_flipped_byte_in_key_file_master_is_rejected():
    v = STORED["keyfile.json"]
    doc = json.loads(X(v["bytes"]))
    sealed_master = base64.b64decode(doc["master"])
    kek = Cipher(X(v["kek"]))
    assert kek.open(ZERO_NONCE, sealed_master, KEY_AAD, "vector") == SECRET
    for i in range(len(sealed_master)):
        bad = _flipped(sealed_master, i)
        with pytest.raises(IntegrityError):
            kek.open(ZERO_NONCE, bad, KEY_AAD, "vector")
        doc["master"] = base64.b64encode(bad).decode()
        assert open_key_file(json.dumps(doc).encode(), v["password"].encode(), "vector") is None
    doc["master"] = base64.b64encode(sealed_master).decode()
    doc["kdf"]["salt"] = base64.b64encode(_flipped(X(v["salt"]), 0)).decode()
    assert open_key_file(json.dumps(doc).encode(), v["password"].encode(), "vector") is None


def test_flipped_byte_in_tree_or_blob_plaintext_changes_its_id():
    """Trees and data are not encrypted on their own; the keyed id catches any change."""
    tree = X(STORED["tree.json"]["root"]["encoded"])
    for i in range(0, len(tree), 7):
        assert MASTER.blob_id(_flipped(tree, i)).hex() != STORED["tree.json"]["root"]["id"]


def test_unknown_sealed_version_is_refused_before_decryption():
    data = bytearray(X(STORED["config.json"]["sealed"]["bytes"]))
    data[4] = 2
    with pytest.raises(UnsupportedFormat):
        sealed.check_header(bytes(data), sealed.MAGIC_CONFIG, "config")
    with pytest.raises(StrongroomError):
        open_config(MasterKey(bytes(32)), bytes(data))  # refused whatever the key


# -- keys and access (spec §16) ---------------------------------------------------------------------


def test_access_vectors_with_the_code():
    from strongroom.audit import decode_header
    from strongroom.chain import ChainLink
    from strongroom.crypto import boxed
    from strongroom.crypto.keyfile import open_access_key
    from strongroom.errors import AccessDenied
    v = STORED["access.json"]
    assert MASTER.shared_root.hex() == v["derived"]["shared_root"]
    assert MASTER.recipient_public.hex() == v["derived"]["x25519_public"]
    writer = open_access_key(v["writer_key_file"]["text"].encode(), v["password"].encode(), "vector")
    assert writer.key.write_only and writer.info.kind == "write-only"
    assert writer.key.config_payload == X(v["writer_key_file"]["config_payload"])
    assert writer.signer.info.public == X(v["signers"]["write_only"]["public"])
    assert MASTER.certify(1, writer.signer.info.public) == X(v["signers"]["write_only"]["certificate"])
    full = open_access_key(v["full_key_file_with_signing_seed"]["text"].encode(), v["password"].encode(), "vector")
    assert full.key.secret == SECRET and full.signer.info.public == X(v["signers"]["full"]["public"])
    assert open_index(writer.key, X(v["shared_index"]["bytes"]), "vector") == ([], [])
    pack = X(v["x25519_pack"]["bytes"])
    assert pack_name(pack) == v["x25519_pack"]["name"]
    envelope, entries = parse_header(MASTER, pack, len(pack), "vector")
    assert envelope == b"\x01" + X(v["x25519_pack"]["ephemeral_public"])
    cipher = pack_cipher(MASTER, envelope, "vector")
    assert open_blob(cipher, entries[0], pack[:entries[0].length], "vector") == X(v["x25519_pack"]["blob"])
    with pytest.raises(AccessDenied):
        parse_header(writer.key, pack, len(pack), "vector")
    snap = v["boxed_snapshot"]
    header, payload, signer = boxed.open_boxed(MASTER, X(snap["bytes"]), boxed.MAGIC_SNAPSHOT, "vector")
    assert json.loads(payload) == snap["json"] and signer.kind == 1
    link = ChainLink.decode(header, "vector")
    assert (link.group.hex(), link.seq, link.previous) == (v["group_tag"]["tag"], 1, "cd" * 32)
    entry = v["log_entry"]
    header, payload, signer = boxed.open_boxed(MASTER, X(entry["bytes"]), boxed.MAGIC_LOG, "vector")
    assert decode_header(header, "vector") == (3, ["99" * 32]) and json.loads(payload) == entry["json"]
    assert signer.public == X(v["signers"]["full"]["public"])


@pytest.mark.parametrize("which", ["boxed_snapshot", "log_entry"])
def test_spec_reader_boxed_objects(which):
    """§16.3 from the text: X25519, BLAKE3 derive_key, AES-GCM, zstd, then Ed25519 over the rest."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    v = STORED["access.json"]
    obj = v[which]
    data = X(obj["bytes"])
    assert data[:4] == obj["magic"].encode() and data[4] == 1
    hlen = struct.unpack_from("<H", data, 5)[0]
    assert data[7:7 + hlen] == X(obj["header"])
    eph = data[7 + hlen:7 + hlen + 32]
    private = blake3.blake3(SECRET, derive_key_context="strongroom 2026-11-22 v1 repository x25519 key").digest()
    recipient = X25519PrivateKey.from_private_bytes(private)
    shared = recipient.exchange(X25519PublicKey.from_public_bytes(eph))
    key = blake3.blake3(shared + eph + recipient.public_key().public_bytes_raw(),
                        derive_key_context="strongroom 2026-11-22 v1 boxed object key from x25519").digest()
    assert key.hex() == obj["box_key"]
    body_end = len(data) - 64
    frame = AESGCM(key).decrypt(bytes(12), data[7 + hlen + 32:body_end], data[:7 + hlen + 32])
    plain = zstandard.ZstdDecompressor().decompressobj().decompress(frame)
    kind, public, cert = plain[0], plain[1:33], plain[33:65]
    assert public.hex() == v["signers"][obj["signer"]]["public"]
    certify_key = blake3.blake3(SECRET, derive_key_context="strongroom 2026-11-22 v1 signing key certification").digest()
    assert blake3.blake3(b"strongroom signing key\0" + bytes([kind]) + public, key=certify_key).digest() == cert
    Ed25519PublicKey.from_public_bytes(public).verify(data[body_end:], b"strongroom signature v1\0" + data[:body_end])
    assert json.loads(plain[65:]) == obj["json"]


@pytest.mark.parametrize("position", [0, 10, 60, -70, -1])
def test_flipped_byte_in_boxed_snapshot_is_rejected(position):
    from strongroom.crypto import boxed
    data = bytearray(X(STORED["access.json"]["boxed_snapshot"]["bytes"]))
    data[position] ^= 0x01
    with pytest.raises((IntegrityError, UnsupportedFormat)):
        boxed.open_boxed(MASTER, bytes(data), boxed.MAGIC_SNAPSHOT, "vector")


def test_dictionary_vector_with_the_code_and_by_hand():
    """The dictionary object and its blob, with the reader functions and with only AES-GCM + zstd."""
    from strongroom.config import Config
    from strongroom.dictionary import Dictionaries, dictionary_id
    from strongroom.storage.memory import MemoryStorage
    doc = STORED["dictionary.json"]
    d, b, p = doc["dictionary"], doc["blob"], doc["pack"]
    content = X(d["content"])
    assert dictionary_id(MASTER, content) == d["id"] == int.from_bytes(MASTER.blob_id(X(d["id_input"]))[:4], "little")
    assert d["path"] == f"dicts/{d['id']:08x}"
    assert Config.decode(json.dumps(doc["config_json"]).encode()).dictionary_size == 2048
    # With the code: the Dictionaries loader and the blob decoder.
    storage = MemoryStorage()
    storage.store(d["path"], X(d["bytes"]))
    loaded = Dictionaries(storage, MASTER)
    assert loaded.ids() == [d["id"]] and loaded.get(d["id"]).as_bytes() == content
    pack = X(p["bytes"])
    envelope, entries = parse_header(MASTER, pack, len(pack), "vector")
    assert [(e.compression, e.dictionary, e.offset, e.length) for e in entries] == [
        (b["compression"], d["id"], b["offset"], b["length"])] and b["compression"] == 1
    entry = entries[0]
    payload = open_blob(pack_cipher(MASTER, envelope, "vector"), entry, pack[entry.offset:entry.offset + entry.length], "v")
    assert payload == X(b["payload"])
    assert decompress_blob(entry.compression, payload, entry.raw_length, "v", entry.dictionary, loaded.get) == X(b["plaintext"])
    # By hand: AES-GCM under the shared-object key with the 5-byte header as AAD, then zstd.
    data = X(d["bytes"])
    assert data[:5] == b"SRDW\x01" and data[5:37] == X(d["salt"])
    assert X(d["shared_key"]) == blake3.blake3(X(d["salt"]), key=MASTER.shared_root).digest()
    frame = AESGCM(X(d["shared_key"])).decrypt(bytes(12), data[37:], data[:5])
    assert frame == X(d["zstd_frame"]) and zstandard.ZstdDecompressor().decompress(frame, max_output_size=1 << 20) == content
    zdict = zstandard.ZstdCompressionDict(content)
    assert zstandard.ZstdDecompressor(dict_data=zdict).decompress(payload, max_output_size=entry.raw_length) == X(b["plaintext"])
    assert X(b["aad"]) == b"SRBL" + bytes([0, 1]) + d["id"].to_bytes(4, "little") + X(b["id"])
    # The id is bound: the same object under another id is refused.
    storage.store(f"dicts/{d['id'] ^ 1:08x}", data)
    with pytest.raises(IntegrityError, match="does not match its id"):
        loaded.get(d["id"] ^ 1)


# -- archive nodes (§21), read as the spec words it -------------------------------------------------

def spec_rebuild_archive(node: dict, blob: "Callable[[str], bytes]") -> bytes:
    """The original file from an archive node, following spec §21 only (zip and tar: no outer)."""
    import hashlib
    import zlib
    a = node["archive"]
    skeleton = b"".join(blob(i) for i in a.get("skeleton", []))
    assert "skeleton_lists" not in a and len(skeleton) == a["skeleton_size"]
    out, pos = bytearray(), 0
    for layout_id in a["layout"]:
        for seg in json.loads(blob(layout_id))["segments"]:
            if "gap" in seg:
                out += skeleton[pos:pos + seg["gap"]]
                pos += seg["gap"]
                continue
            m = seg["member"]
            data = b"".join(blob(i) for i in m.get("content", []))
            assert len(data) == m["size"] and zlib.crc32(data) == m.get("crc32", zlib.crc32(data))
            if "deflate" in m:
                c = zlib.compressobj(m["deflate"], zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
                data = c.compress(data) + c.flush()
            out += data
    assert pos == len(skeleton)
    assert hashlib.sha256(out).hexdigest() == a["sha256"]
    return bytes(out)


def test_spec_reader_archive_node_rebuilds_the_zip():
    import zlib
    v = STORED["archive.json"]
    blobs = {k: X(b) for k, b in v["blobs"].items()}
    for blob_id, plaintext in blobs.items():
        assert MASTER.blob_id(plaintext).hex() == blob_id
    node = v["tree"]["node"]
    assert (node["type"], node["archive"]["format"], node["archive"]["fidelity"]) == ("archive", "zip", "identical")
    assert json.loads(X(v["tree"]["encoded"]))["nodes"] == [node]
    if v["zlib"] != zlib.ZLIB_RUNTIME_VERSION:
        pytest.skip(f"vector made with zlib {v['zlib']}, installed {zlib.ZLIB_RUNTIME_VERSION}")
    assert spec_rebuild_archive(node, blobs.__getitem__) == X(v["zip"])
    # the members are an ordinary tree: chat/ with readme.txt and messages.jsonl
    root = json.loads(blobs[node["subtree"]])["nodes"]
    assert [(n["name"], n["type"]) for n in root] == [("chat", "dir")]
    chat = json.loads(blobs[root[0]["subtree"]])["nodes"]
    assert [n["name"] for n in chat] == ["messages.jsonl", "readme.txt"]
    assert b"".join(blobs[i] for i in chat[1]["content"]) == b"hello, strongroom\n"


def test_archive_node_decodes_with_the_code():
    v = STORED["archive.json"]
    [node] = decode_tree(X(v["tree"]["encoded"]), "vector")
    assert node.archive.sha256.hex() == v["tree"]["node"]["archive"]["sha256"]
    assert encode_tree([node]) == X(v["tree"]["encoded"])
    for bad in ({"fidelity": "roughly"}, {"format": "rar"}, {"sha256": "00"}, {"layout": ["zz"]}):
        doc = json.loads(X(v["tree"]["encoded"]))
        doc["nodes"][0]["archive"].update(bad)
        with pytest.raises(IntegrityError):
            decode_tree(json.dumps(doc).encode(), "vector")
    doc = json.loads(X(v["tree"]["encoded"]))
    del doc["nodes"][0]["subtree"]
    with pytest.raises(IntegrityError):
        decode_tree(json.dumps(doc).encode(), "vector")


# -- §24 grouped blobs: the code, and an independent reader written from the spec ---------------------

def spec_read_group_pack(data: bytes) -> list[tuple]:
    """(id, plaintext) of every blob of a version 2 pack, read as §24 describes."""
    env_len, header_len, version, magic = struct.unpack("<IIB4s", data[-13:])
    assert (magic, version) == (b"SRPK", 2)
    envelope = data[len(data) - 13 - env_len:len(data) - 13]
    key = spec_subkey(CONTEXT_PACK, envelope[1:])
    header_start = len(data) - 13 - env_len - header_len
    header = AESGCM(key).decrypt(b"\xff" * 12, data[header_start:header_start + header_len], b"SRPH")
    (ranges,) = struct.unpack_from("<I", header)
    pos, expected, out = 4, 0, []
    for _ in range(ranges):
        btype, comp, dictionary, offset, length, count = struct.unpack_from("<BBIQII", header, pos)
        pos += 22
        members = [struct.unpack_from("<32sI", header, pos + 36 * i) for i in range(count)]
        pos += 36 * count
        assert offset == expected and dictionary == 0 and count >= 1
        expected = offset + length
        total = sum(n for _, n in members)
        if count == 1:
            aad = b"SRBL" + bytes([btype, comp]) + dictionary.to_bytes(4, "little") + members[0][0]
        else:
            aad = b"SRGR" + bytes([btype, comp]) + dictionary.to_bytes(4, "little") + total.to_bytes(4, "little")
        plain = AESGCM(key).decrypt(offset.to_bytes(12, "big"), data[offset:offset + length], aad)
        if comp == 1:
            plain = zstandard.ZstdDecompressor().decompress(plain, max_output_size=total)
        assert len(plain) == total
        at = 0
        for blob_id, n in members:
            member = plain[at:at + n]
            at += n
            assert blake3.blake3(member, key=spec_subkey(CONTEXT_CHUNK_ID)).digest() == blob_id
            out.append((blob_id.hex(), member.hex()))
    assert pos == len(header) and expected == header_start
    return out


def test_groups_vector_read_by_the_code():
    v = STORED["groups.json"]
    data = X(v["pack"]["bytes"])
    envelope, entries = parse_header(MASTER, data, len(data), "vector")
    described = [m for r in v["pack"]["ranges"] for m in r["members"]]
    assert [(e.id.hex(), e.raw_length, e.member_offset, e.group_length) for e in entries] == [
        (m["id"], m["raw_length"], m["member_offset"], m["group_length"]) for m in described]
    from strongroom.pack import decode_entry
    for e, m in zip(entries, described):
        sealed_bytes = data[e.offset:e.offset + e.length]
        assert decode_entry(pack_cipher(MASTER, envelope, "v"), e, sealed_bytes, "v", None, MASTER.blob_id)[1] == X(
            m["plaintext"])
    packs, supersedes = open_index(MASTER, X(v["index"]["bytes"]), "vector")
    assert supersedes == [] and packs[0].name == v["pack"]["name"] and packs[0].entries == entries
    assert X(v["index"]["bytes"])[4] == 2


def test_groups_vector_read_from_the_spec():
    v = STORED["groups.json"]
    assert spec_read_group_pack(X(v["pack"]["bytes"])) == [
        (m["id"], m["plaintext"]) for r in v["pack"]["ranges"] for m in r["members"]]
    data = X(v["index"]["bytes"])
    assert data[:5] == b"SRIW\x02"
    key = blake3.blake3(data[5:37], key=MASTER.shared_root).digest()
    payload = zstandard.ZstdDecompressor().decompress(AESGCM(key).decrypt(bytes(12), data[37:], data[:5]),
                                                      max_output_size=1 << 20)
    assert payload.hex() == v["index"]["payload"]
    # §24 index payload: §10 with the pack header's range list in place of the entries
    n_super, n_packs = struct.unpack_from("<II", payload)
    assert (n_super, n_packs) == (0, 1)
    name, size, env_len = struct.unpack_from("<32sQH", payload, 8)
    assert name.hex() == v["pack"]["name"] and size == v["pack"]["size"]
    listed = payload[8 + 42 + env_len:]
    header = AESGCM(spec_subkey(CONTEXT_PACK, X(v["pack"]["envelope"])[1:])).decrypt(
        b"\xff" * 12, X(v["pack"]["header_ciphertext"]), b"SRPH")
    assert listed == header == X(v["pack"]["header_plaintext"])
