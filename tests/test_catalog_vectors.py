"""spec/vectors/catalog.json (spec §23) re-derived from the spec's rules by hand, and the
catalogue record reader's rejections. (tests/test_vectors.py regenerates the file with the code.)"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import blake3
import pytest

from strongroom.crypto.master import MasterKey
from strongroom.errors import IntegrityError
from strongroom.messages.catalog_format import PartHeader, decode_record
from strongroom.snapshot import Snapshot
from strongroom.tree import decode_tree

VECTOR = json.loads((Path(__file__).resolve().parents[1] / "spec" / "vectors" / "catalog.json").read_text("utf-8"))
MASTER = MasterKey(bytes.fromhex(VECTOR["master_secret"]))


def canonical(doc) -> str:
    """§12's canonical JSON, written out: sorted keys, compact, raw UTF-8, minimal escapes."""
    if isinstance(doc, dict):
        return "{" + ",".join(canonical(k) + ":" + canonical(doc[k]) for k in sorted(doc)) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(canonical(v) for v in doc) + "]"
    if isinstance(doc, bool):
        return "true" if doc else "false"
    if isinstance(doc, int):
        return str(doc)
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return '"' + "".join(short.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in doc) + '"'


def record_line(m: dict) -> str:
    doc = {"p": m["platform"], "c": m["conversation"], "i": m["message_id"], "a": m["author"], "t": m["time_ms"],
           "e": m["edited"], "x": m["text"]}  # version 2: no text hash (§23.7)
    for key, field in (("r", "reply_to"), ("o", "topic"), ("f", "attachments")):
        if m[field]:
            doc[key] = m[field]
    return canonical(doc)


def test_record_lines_sorted_and_unique():
    lines = {(m["conversation"], m["time_ms"], m["message_id"], record_line(m)) for m in VECTOR["messages"]}
    assert [line for *_, line in sorted(lines)] == VECTOR["record_lines"]
    assert len(VECTOR["record_lines"]) == len(VECTOR["messages"]) - 1  # the duplicate appears once


def test_chunks_cut_at_record_boundaries():
    chunks, current = [], []
    for line in VECTOR["record_lines"]:
        raw = line.encode()
        current.append(raw + b"\n")
        size = sum(map(len, current))
        if size >= 65536 or (size >= 1024 and int.from_bytes(MASTER.blob_id(raw)[:4], "little") % 8 == 0):
            chunks.append(b"".join(current))
            current = []
    if current:
        chunks.append(b"".join(current))
    assert [{"lines": c.count(b"\n"), "bytes": len(c), "id": MASTER.blob_id(c).hex()} for c in chunks] == \
        VECTOR["chunks"]
    assert len(chunks) >= 3


def test_keys():
    k = VECTOR["keys"]

    def content(ids):
        return MASTER.blob_id(b"strongroom catalogue content\0" + blake3.blake3(b"".join(bytes.fromhex(i) for i in ids))
                              .digest())
    assert content(k["file_chunk_ids"]).hex() == k["content_key"]
    assert content(k["context_file"]["chunk_ids"]).hex() == k["context_file"]["content_key"]
    context = MASTER.blob_id(b"strongroom catalogue context\0" + k["context_file"]["path"].encode() + b"\0"
                             + bytes.fromhex(k["context_file"]["content_key"]))
    assert context.hex() == k["context_key"]
    doc = canonical({"catalog": 2, "content": k["content_key"], "context": k["context_key"],
                     "platform": k["platform"], "source": k["source"]})
    assert MASTER.blob_id(b"strongroom catalogue part\0" + doc.encode()).hex() == k["part_key"]


def test_zip_member_key():
    z = VECTOR["keys"]["zip_member"]
    stored = bytes.fromhex(z["stored_data"])
    text = zlib.decompressobj(-15).decompress(stored)  # the member holds the vector's record lines
    assert text == "".join(line + "\n" for line in VECTOR["record_lines"]).encode()
    assert (z["method"], z["crc32"], z["size"]) == (8, zlib.crc32(text), len(text))
    key = MASTER.blob_id(b"strongroom catalogue stored member\0" + struct.pack("<HIQ", 8, z["crc32"], z["size"])
                         + blake3.blake3(stored).digest())
    assert key.hex() == z["content_key"]


def test_part_header_node_and_trees():
    part = VECTOR["part"]
    k = VECTOR["keys"]
    assert part["header"] == canonical({"catalog": 2, "key": k["part_key"], "messages": len(VECTOR["record_lines"]),
                                        "platform": k["platform"], "source": k["source"]}) + "\n"
    header = PartHeader.decode(part["header"].encode(), "vector")
    assert (header.platform, header.source, header.key.hex(), header.messages, header.version) == \
        ("slack", k["source"], k["part_key"], len(VECTOR["record_lines"]), 2)
    assert MASTER.blob_id(part["header"].encode()).hex() == part["header_id"]
    assert part["node"]["content"] == [part["header_id"]] + [c["id"] for c in VECTOR["chunks"]]
    trees = VECTOR["trees"]
    for t in trees.values():
        assert MASTER.blob_id(t["json"].encode()).hex() == t["id"]
    [node] = decode_tree(trees["general"]["json"].encode(), "vector")
    assert (node.name, node.type, node.mode, node.size) == (b"2023-11-14.json", "file", 0o600,
                                                            len(part["header"].encode()) + sum(c["bytes"] for c in VECTOR["chunks"]))
    assert json.loads(trees["root"]["json"]) == {"nodes": [{"mode": 0o700, "name": "backups",
                                                            "subtree": trees["backups"]["id"], "type": "dir"}]}
    assert json.loads(trees["backups"]["json"]) == {"nodes": [{"mode": 0o700, "name": "export",
                                                               "subtree": trees["export"]["id"], "type": "dir"}]}
    snap = Snapshot.decode(json.dumps(VECTOR["snapshot_json"]).encode(), "00" * 32, "vector")
    assert snap.catalog == trees["root"]["id"] and snap.root_trees()[1].hex() == trees["root"]["id"]


def test_decode_record_round_trip_and_rejections():
    for line, m in zip(VECTOR["record_lines"][:3], [VECTOR["messages"][3], *VECTOR["messages"][:2]]):
        r = decode_record(line, "vector")
        assert (r.platform, r.conversation, r.message_id, r.author, r.time_ms, r.edited, r.text, r.reply_to,
                r.topic, list(r.attachments)) == (m["platform"], m["conversation"], m["message_id"], m["author"],
                                                  m["time_ms"], m["edited"], m["text"], m["reply_to"], m["topic"],
                                                  m["attachments"])
    good = json.loads(VECTOR["record_lines"][1])
    bad = [{k: v for k, v in good.items() if k != "x"}, {**good, "z": 1}, {**good, "t": 1.5}, {**good, "t": True},
           {**good, "e": 0}, {**good, "x": None}, {**good, "h": "00"}, {**good, "f": "a.png"}, {**good, "f": [1]},
           {**good, "h": None}, {**good, "h": "zz" * 16}, {**good, "h": "ab " * 10 + "ab"}, {**good, "h": 7}]
    for doc in bad:
        with pytest.raises(IntegrityError, match="malformed catalogue record"):
            decode_record(json.dumps(doc), "vector")
    with pytest.raises(IntegrityError):
        decode_record("[1, 2]", "vector")
    with pytest.raises(IntegrityError):
        PartHeader.decode(b'{"catalog":2}', "vector")
    for version in (0, 3, "2", True):
        with pytest.raises(IntegrityError, match="malformed catalogue part header"):
            PartHeader.decode(VECTOR["part"]["header"].replace('"catalog":2', f'"catalog":{json.dumps(version)}')
                              .encode(), "vector")


def test_records_carry_no_text_hash_and_it_is_computed_on_reading():
    for line, m in zip(VECTOR["record_lines"][:3], [VECTOR["messages"][3], *VECTOR["messages"][:2]]):
        assert '"h":' not in line
        assert decode_record(line, "vector").text_hash == blake3.blake3(m["text"].encode()).digest(16).hex()


def test_version_1_parts_still_read():
    """Catalogues written before §23.7: header ``catalog`` 1, records with the text hash ``h``."""
    old = VECTOR["version_1"]
    header = PartHeader.decode(old["header"].encode(), "vector")
    assert (header.version, header.messages, header.key) == (1, 3, bytes.fromhex("ab" * 32))
    assert header.encode().decode() == old["header"]  # re-encodes as the version it was read as
    for line, m in zip(old["record_lines"], VECTOR["messages"][:3]):
        doc = json.loads(line)
        r = decode_record(line, "vector")
        assert r.text_hash == doc["h"] == blake3.blake3(m["text"].encode()).digest(16).hex()
        assert (r.message_id, r.text, r.author) == (m["message_id"], m["text"], m["author"])
