"""Catalogue version 2 (spec §23.7): records without the text hash, smaller chunks; catalogues of
version 1 in a repository are still searched, compared and exported correctly."""

from __future__ import annotations

import functools
import json

import blake3

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.crypto.master import MasterKey
from strongroom.messages import catalog_build, catalog_format
from strongroom.messages.catalog_format import (CATALOG_VERSION, MAX_CHUNK, MIN_CHUNK, PartHeader, Record,
                                                 chunk_records, decode_record, encode_record, text_hash)
from strongroom.messages.catalog_index import BLOCK_MAX, BLOCK_MODULUS, MessageIndex, cache_blocks
from strongroom.messages.catalog_query import Filters, conversation_records, diff, search
from strongroom.messages.model import Message
from tests.test_catalog import LineReader

DAY = 86_400_000


JsonLinesReader = LineReader  # ``*.chat.jsonl``: one {"c", "i", "a", "t", "e", "x"} object per line


def _write(path, messages) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"c": c, "i": i, "a": a, "t": t, "e": e, "x": x}) + "\n"
                            for c, i, a, t, e, x in messages))


def _encode_version_1(m: Message) -> bytes:
    """A record line as catalogue version 1 wrote it: §23.1's canonical JSON with ``h``."""
    doc = json.loads(encode_record(m))
    doc["h"] = text_hash(m.text)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _part_key_version_1(keyed_hash, platform, source, content, context) -> bytes:
    doc = json.dumps({"context": context.hex(), "content": content.hex(), "platform": platform, "source": source},
                     sort_keys=True, separators=(",", ":")).encode()
    return keyed_hash(b"strongroom catalogue part\0" + doc)


def _catalogue_lines(repo, snap) -> tuple[list[PartHeader], list[bytes]]:
    headers, lines = [], []
    stack = [bytes.fromhex(snap.catalog)]
    while stack:
        for node in repo.load_tree(stack.pop()):
            if node.subtree:
                stack.append(node.subtree)
                continue
            ids = list(repo.file_chunks(node))
            headers.append(PartHeader.decode(repo.load_blob(ids[0]), "test"))
            for chunk_id in ids[1:]:
                lines += repo.load_blob(chunk_id).splitlines()
    return headers, lines


def test_a_version_1_catalogue_is_read_alongside_version_2(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [JsonLinesReader()])
    src = tmp_path / "src"
    night1 = [("general", "m1", "alice", DAY, False, "hello world"),
              ("general", "m2", "bob", DAY + 1000, False, "the deploy is broken"),
              ("random", "m3", "carol", DAY + 2000, False, "lunch? ☕")]
    _write(src / "team.chat.jsonl", night1)
    with monkeypatch.context() as old_writer:  # night 1 written as version 1 was
        old_writer.setattr(catalog_build, "encode_record", _encode_version_1)
        old_writer.setattr(catalog_build, "part_key", _part_key_version_1)
        old_writer.setattr(catalog_build, "PartHeader", functools.partial(PartHeader, version=1))
        old_writer.setattr(catalog_format, "MIN_CHUNK", 4096)
        old_writer.setattr(catalog_format, "CUT_MODULUS", 48)
        s1 = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    headers, lines = _catalogue_lines(repo, s1)
    assert [h.version for h in headers] == [1] and len(lines) == 3 and all(b'"h":"' in line for line in lines)

    night2 = [night1[0], ("general", "m2", "bob", DAY + 1000, True, "the deploy is fixed"), night1[2],
              ("general", "m4", "alice", 2 * DAY, False, "thanks")]
    _write(src / "team.chat.jsonl", night2)
    s2 = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    headers, lines = _catalogue_lines(repo, s2)
    assert [h.version for h in headers] == [CATALOG_VERSION] == [2]
    assert len(lines) == 4 and not any(b'"h":' in line for line in lines)

    with MessageIndex(repo) as index:
        assert index.ensure(repo.snapshots()) == 2
        found = search(index, [s1.id, s2.id], Filters(query="o"))
        # the same message in both versions is one record, credited to both snapshots
        assert [(f.record.message_id, f.record.text_hash, f.snapshots) for f in found] == [
            ("m1", text_hash("hello world"), [s1.id, s2.id]),
            ("m2", text_hash("the deploy is broken"), [s1.id]),
            ("m2", text_hash("the deploy is fixed"), [s2.id]),
        ]
        [d] = diff(index, s1.id, s2.id)
        assert ([r.message_id for r in d.added], d.deleted, [(a.text, b.text) for a, b in d.edited]) == \
            (["m4"], [], [("the deploy is broken", "the deploy is fixed")])
        assert [r.text for r in conversation_records(index, s1.id, Filters(conversation="random"))] == ["lunch? ☕"]


def test_an_edit_changes_only_the_chunk_around_it():
    master = MasterKey(bytes(range(32)))
    messages = [Message("slack", "general", f"{i:06d}", f"user{i % 9}", DAY + i * 1000, False,
                        f"message {i} about the release plan for week {i % 13}") for i in range(3000)]
    before = list(chunk_records([encode_record(m) for m in messages], master.blob_id))
    edited = list(messages)
    edited[1500] = Message("slack", "general", "001500", "user6", DAY + 1_500_000, True, "edited text")
    after = list(chunk_records([encode_record(m) for m in edited], master.blob_id))
    assert b"".join(before).count(b"\n") == 3000 and b"".join(after).count(b"\n") == 3000
    assert 1 <= len(set(after) - set(before)) <= 2 and len(set(before) - set(after)) == len(set(after) - set(before))
    assert all(MIN_CHUNK <= len(c) < MAX_CHUNK for c in before[:-1])
    assert 1500 < sum(map(len, before)) / len(before) < 6000  # ~3 KiB on average (§23.7)


def test_decoded_record_has_the_text_hash_of_its_text():
    m = Message("slack", "c", "1", "a", 5, True, "naïve café ☕", "", reply_to="0", attachments=("x.png",))
    assert decode_record(encode_record(m), "test") == Record("slack", "c", "1", "a", 5, True, text_hash("naïve café ☕"), "naïve café ☕",
                                         "0", "", ("x.png",))



def test_cache_blocks_group_runs_of_chunks_the_same_way_in_every_part():
    ids = [blake3.blake3(b"%d" % i).digest() for i in range(400)]
    blocks = cache_blocks(ids)
    assert [c for _, members in blocks for c in members] == ids
    assert all(members[-1][0] % BLOCK_MODULUS == 0 or len(members) == BLOCK_MAX for _, members in blocks[:-1])
    assert all(len(members) <= BLOCK_MAX for _, members in blocks)
    assert 50 < len(blocks) < 200  # ~4 chunks a block
    # a changed chunk changes only its own block (and the one after it when it moves a cut)
    changed = list(ids)
    changed[200] = blake3.blake3(b"edited").digest()
    before, after = {b for b, _ in blocks}, {b for b, _ in cache_blocks(changed)}
    assert 1 <= len(after - before) <= 2 and len(before - after) <= 2
    assert len({b for b, _ in blocks}) == len(blocks) and not ({b for b, _ in blocks} & set(ids))


def test_cache_values_record_their_size():
    """Without it the decompressor allocates its 64 MiB limit for every value a query reads."""
    import zstandard

    from strongroom.messages.catalog_index import _compress_sized
    plain = b'{"a":"x","c":"general"}\n' * 200
    frame = _compress_sized(plain, 3)
    assert zstandard.frame_content_size(frame) == len(plain)
    assert zstandard.ZstdDecompressor().decompress(frame) == plain
