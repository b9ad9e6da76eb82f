"""The message catalogue: built at backup time, stored in the repository, indexed in the cache,
queried by search, diff, export and stats. Exports here are in a tiny test format (one JSON
message per line, ``*.chat.jsonl``; a folder one with a users file) so the tests control every
add, edit and delete exactly."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.forget import run_forget
from strongroom.commands.prune import PruneOptions, run_prune
from strongroom.messages import catalog_build
from strongroom.messages.catalog_format import Record, text_hash
from strongroom.messages.catalog_index import MessageIndex, cache_folder
from strongroom.messages.catalog_query import Filters, conversation_records, diff, search, stats
from strongroom.messages.model import Export, Message


class LineReader:
    """``<name>.chat.jsonl``: lines of {"c", "i", "a", "t", "e", "x"}; a one-file export."""

    platform = "testchat"

    def find(self, files):
        return [Export(self.platform, p, (p,)) for p in files.paths() if p.endswith(".chat.jsonl")]

    def messages(self, files, export):
        for path in export.files:
            with files.open(path) as f:
                for line in f:
                    d = json.loads(line)
                    yield Message(self.platform, d["c"], d["i"], d["a"], d["t"], d["e"], d["x"], "")


class FolderReader:
    """``<root>/users.json`` ({"U1": "alice"}) and ``<root>/<conversation>/<day>.json`` lists."""

    platform = "testfolder"

    def find(self, files):
        roots = [p[:-len("/users.json")] for p in files.paths() if p.endswith("/users.json")]
        return [Export(self.platform, r, tuple(p for p in files.paths() if p.startswith(r + "/") and p.endswith(".json")))
                for r in roots]

    def messages(self, files, export):
        with files.open(f"{export.root}/users.json") as f:
            users = json.load(f)
        for path in export.files:
            if path.endswith("/users.json"):
                continue
            conversation = path.split("/")[-2]
            with files.open(path) as f:
                for d in json.load(f):
                    yield Message(self.platform, conversation, d["i"], users.get(d["u"], d["u"]), d["t"], d["e"],
                                  d["x"], path[len(export.root) + 1:])


READERS = [LineReader(), FolderReader()]
DAY = 86_400_000


@pytest.fixture(autouse=True)
def _test_readers(monkeypatch):
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", READERS)


def write_lines(path, messages):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))


def msg(conv, i, author, t, text, edited=False):
    return {"c": conv, "i": i, "a": author, "t": t, "e": edited, "x": text}


def backup(repo, src, **kw):
    result = run_backup(repo, BackupOptions(paths=[str(src)], **kw))
    assert not result.warnings
    return result.snapshot


def rec(conv, i, author, t, text, edited=False, platform="testchat"):
    return Record(platform, conv, i, author, t, edited, text_hash(text), text)


@pytest.fixture
def series(repo, tmp_path):
    """Three nights: night 2 adds m4, edits m2; night 3 deletes m1, adds m5 in a new channel."""
    src = tmp_path / "src"
    night1 = [msg("general", "m1", "alice", DAY, "hello world"),
              msg("general", "m2", "bob", DAY + 1000, "the deploy is broken"),
              msg("random", "m3", "carol", DAY + 2000, "lunch?")]
    write_lines(src / "chat" / "team.chat.jsonl", night1)
    s1 = backup(repo, src)
    night2 = [night1[0], msg("general", "m2", "bob", DAY + 1000, "the deploy is fixed", True), night1[2],
              msg("general", "m4", "alice", 2 * DAY, "Great, thanks! ☕")]
    write_lines(src / "chat" / "team.chat.jsonl", night2)
    s2 = backup(repo, src)
    night3 = night2[1:] + [msg("ops", "m5", "dave", 3 * DAY, "rotate the deploy keys")]
    write_lines(src / "chat" / "team.chat.jsonl", night3)
    s3 = backup(repo, src)
    return s1, s2, s3


def test_backup_stores_a_catalogue_and_search_finds_every_version(repo, series):
    s1, s2, s3 = series
    assert all(s.catalog for s in series)
    with MessageIndex(repo) as index:
        assert index.ensure(repo.snapshots()) == 3
        ids = [s.id for s in series]
        found = search(index, ids, Filters(query="DEPLOY"))
        assert [(f.record, f.snapshots) for f in found] == [
            (rec("general", "m2", "bob", DAY + 1000, "the deploy is broken"), [s1.id]),
            (rec("general", "m2", "bob", DAY + 1000, "the deploy is fixed", True), [s2.id, s3.id]),
            (rec("ops", "m5", "dave", 3 * DAY, "rotate the deploy keys"), [s3.id]),
        ]
        # a message deleted from the live chat is still found, in the snapshots that had it
        found = search(index, ids, Filters(query="hello"))
        assert [(f.record.message_id, f.snapshots) for f in found] == [("m1", [s1.id, s2.id])]
        assert [f.record.message_id for f in search(index, ids, Filters(author="ALICE"))] == ["m1", "m4"]
        assert [f.record.message_id for f in search(index, ids, Filters(query="☕"))] == ["m4"]
        assert [f.record.message_id for f in search(index, ids, Filters(since_ms=2 * DAY, until_ms=3 * DAY))] == ["m4"]
        assert [f.record.message_id for f in search(index, [s3.id], Filters(conversation="general"))] == ["m2", "m4"]


def test_diff_lists_added_edited_and_deleted_per_conversation(repo, series):
    s1, s2, s3 = series
    with MessageIndex(repo) as index:
        index.ensure(repo.snapshots())
        d12 = diff(index, s1.id, s2.id)
        assert [(d.platform, d.conversation) for d in d12] == [("testchat", "general")]
        assert d12[0].added == [rec("general", "m4", "alice", 2 * DAY, "Great, thanks! ☕")]
        assert d12[0].deleted == []
        assert d12[0].edited == [(rec("general", "m2", "bob", DAY + 1000, "the deploy is broken"),
                                  rec("general", "m2", "bob", DAY + 1000, "the deploy is fixed", True))]
        d23 = diff(index, s2.id, s3.id)
        assert [(d.conversation, [r.message_id for r in d.added], [r.message_id for r in d.deleted], d.edited)
                for d in d23] == [("general", [], ["m1"], []), ("ops", ["m5"], [], [])]
        assert diff(index, s3.id, s3.id) == []


def test_export_and_stats(repo, series):
    s1, s2, s3 = series
    with MessageIndex(repo) as index:
        index.ensure(repo.snapshots())
        out = list(conversation_records(index, s2.id, Filters(conversation="general")))
        assert [(r.message_id, r.text) for r in out] == [("m1", "hello world"), ("m2", "the deploy is fixed"),
                                                         ("m4", "Great, thanks! ☕")]
        out = list(conversation_records(index, s2.id, Filters(conversation="general", since_ms=DAY + 1,
                                                               until_ms=2 * DAY)))
        assert [r.message_id for r in out] == ["m2"]
        [st] = stats(index, s3.id)
        assert (st.platform, st.conversations, st.messages, st.authors, st.first_ms, st.last_ms) == \
            ("testchat", 3, 4, 4, DAY + 1000, 3 * DAY)


def test_catalogue_survives_forget_prune_and_check(repo, series):
    s1, s2, s3 = series
    run_forget(repo, snapshot_ids=[s1.id, s2.id])
    run_prune(repo, PruneOptions())
    assert run_check(repo).errors == []
    shutil.rmtree(cache_folder(repo))  # the cache is rebuilt from the repository
    with MessageIndex(repo) as index:
        assert index.ensure(repo.snapshots()) == 1
        assert [f.record.message_id for f in search(index, [s3.id], Filters(query="deploy"))] == ["m2", "m5"]


def test_unchanged_parts_are_reused_without_reading(repo, tmp_path, monkeypatch):
    src = tmp_path / "src"
    users = {"U1": "alice", "U2": "bob"}
    (src / "ws" / "general").mkdir(parents=True)
    (src / "ws" / "users.json").write_text(json.dumps(users))
    (src / "ws" / "general" / "d1.json").write_text(json.dumps([{"i": "1", "u": "U1", "t": DAY, "e": False,
                                                                  "x": "first"}]))
    s1 = backup(repo, src)
    read = []
    original = FolderReader.messages

    def spy(self, files, export):
        read.append(sorted(p for p in files.paths()))
        return original(self, files, export)

    monkeypatch.setattr(FolderReader, "messages", spy)
    (src / "ws" / "general" / "d2.json").write_text(json.dumps([{"i": "2", "u": "U2", "t": 2 * DAY, "e": False,
                                                                  "x": "second"}]))
    s2 = backup(repo, src)
    prefix = os.path.relpath(src, "/")
    assert read == [[f"{prefix}/ws/general/d2.json", f"{prefix}/ws/users.json"]]
    (src / "ws" / "users.json").write_text(json.dumps({"U1": "Alice A.", "U2": "bob"}))  # context changed
    s3 = backup(repo, src)
    assert len(read[1]) == 3
    with MessageIndex(repo) as index:
        index.ensure(repo.snapshots())
        found = search(index, [s1.id, s2.id, s3.id], Filters(query="first"))
        assert [(f.record.author, f.snapshots) for f in found] == [("alice", [s1.id, s2.id]), ("Alice A.", [s3.id])]


def test_no_export_no_catalogue_and_no_catalog_option(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("nothing to see")
    assert backup(repo, src).catalog is None
    write_lines(src / "a.chat.jsonl", [msg("c", "1", "a", 1, "x")])
    assert backup(repo, src, catalog=False).catalog is None
    assert backup(repo, src).catalog is not None


def _catalogue_blobs(repo, snap) -> list[bytes]:
    """The data blobs of a snapshot's catalogue (headers and record chunks)."""
    out, stack = [], [bytes.fromhex(snap.catalog)]
    while stack:
        for node in repo.load_tree(stack.pop()):
            if node.type == "dir":
                stack.append(node.subtree)
            else:
                out += list(repo.file_chunks(node))
    return out


def test_write_only_backup_has_no_catalogue_until_indexed(repo, repo_path, tmp_path):
    from conftest import PASSWORD, WEAK_KDF
    from strongroom.commands.keys import add_key
    from strongroom.commands.messages import run_index
    from strongroom.storage import LocalStorage
    add_key(repo, b"writer passphrase", WEAK_KDF, write_only=True)
    src = tmp_path / "src"
    write_lines(src / "a.chat.jsonl", [msg("c", "1", "a", DAY, "written by a backup host")])
    with type(repo).open(LocalStorage(repo_path), b"writer passphrase") as writer:
        result = run_backup(writer, BackupOptions(paths=[str(src)]))
    assert result.snapshot.catalog is None and result.warnings == []
    done = run_index(repo, result.snapshot.id)
    [indexed] = done.indexed
    assert indexed.new_id and indexed.stats.messages == 1
    [snap] = repo.snapshots()
    assert snap.id == indexed.new_id and snap.catalog and snap.tree == result.snapshot.tree
    with MessageIndex(repo) as index:
        index.ensure([snap])
        assert [f.record.text for f in search(index, [snap.id], Filters())] == ["written by a backup host"]
    del PASSWORD


def test_copy_carries_the_catalogue(repo, series, tmp_path):
    from conftest import PASSWORD, WEAK_KDF
    from strongroom.commands.copy import CopySelection, run_copy
    from strongroom.repository import Repository
    from strongroom.storage import LocalStorage
    with Repository.init(LocalStorage(tmp_path / "dst"), PASSWORD, kdf=WEAK_KDF) as dst:
        run_copy(repo, dst, CopySelection())
        copies = dst.snapshots()
        assert len(copies) == 3 and all(c.catalog for c in copies)
        assert {c.catalog for c in copies}.isdisjoint({s.catalog for s in series})  # re-keyed ids
        assert run_check(dst).errors == []
        with MessageIndex(dst) as index:
            index.ensure(copies)
            found = search(index, [c.id for c in copies], Filters(query="deploy"))
            assert [(f.record.text, len(f.snapshots)) for f in found] == [
                ("the deploy is broken", 1), ("the deploy is fixed", 2), ("rotate the deploy keys", 1)]


def test_check_reports_a_damaged_catalogue_and_repair_drops_it(repo, repo_path, series):
    from strongroom.commands.repair import repair_snapshots
    s1, s2, s3 = series
    blob = _catalogue_blobs(repo, s3)[-1]  # the newest record chunk, only in the third snapshot
    pack = repo.index.lookup(blob).pack
    os.remove(repo_path / "data" / pack[:2] / pack)
    result = run_check(repo)
    assert result.affected_snapshots == {s3.id}
    damaged = [e for e in result.errors if e.startswith(f"snapshot {s3.id[:8]} ")]
    assert damaged and all(e.startswith(f"snapshot {s3.id[:8]} message catalogue:/") for e in damaged), damaged
    from strongroom.commands.messages import run_search
    found = run_search(repo, Filters(query="deploy"))  # the damaged catalogue is reported, the rest searched
    assert [s.id for s in found.snapshots] == [s1.id, s2.id] and found.unreadable[0].startswith(s3.id + ": ")
    assert [f.record.text for f in found.matches] == ["the deploy is broken", "the deploy is fixed"]
    fixed = repair_snapshots(repo)
    assert list(fixed.rewritten) == [s3.id]
    assert any("message catalogue" in line for line in fixed.removed_paths)
    assert run_check(repo).affected_snapshots == {s3.id}  # the original is still there, damaged ...
    new = repo.find_snapshot(fixed.rewritten[s3.id][:12])
    assert new.catalog != s3.catalog and new.tree == s3.tree  # ... its repaired copy is not


def test_every_format_fixture_is_catalogued_and_reused(repo, tmp_path, monkeypatch):
    """The real readers on the formats' fixtures: the catalogue holds exactly what they read, and
    a second catalogue of the same tree reads no file again."""
    from pathlib import Path
    from strongroom.index import MessageCache
    from strongroom.messages.catalog_build import build_catalog
    from strongroom.messages.catalog_index import PartNodes
    from strongroom.messages.formats import LocalExportFiles, expand_zips, find_exports
    from strongroom.writer import BlobWriter
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", None)
    src = tmp_path / "exports"
    shutil.copytree(Path(__file__).parent / "fixtures" / "exports", src)
    files = expand_zips(LocalExportFiles(str(src)))
    direct = {(m.platform, m.conversation, m.message_id, m.text)
              for reader, export in find_exports(files) for m in reader.messages(files, export)}
    snap = backup(repo, src)
    with MessageIndex(repo) as index:
        index.ensure([snap])
        found = search(index, [snap.id], Filters())
        assert {(f.record.platform, f.record.conversation, f.record.message_id, f.record.text) for f in found} == direct
        assert {p.platform for p in stats(index, snap.id)} == {"slack", "mattermost", "telegram", "discord",
                                                               "whatsapp", "zulip", "matrix"}
    cache = MessageCache(cache_folder(repo))
    try:
        with BlobWriter(repo) as writer:
            root, again = build_catalog(repo, writer, bytes.fromhex(snap.tree), reuse=PartNodes(cache))
        assert root.hex() == snap.catalog
        assert (again.files_read, again.parts) == (0, 0) and again.parts_reused > 8
    finally:
        cache.close()


def test_index_all_catalogues_old_snapshots_reusing_unchanged_files(repo, tmp_path):
    from strongroom.commands.messages import run_index
    src = tmp_path / "src"
    write_lines(src / "a.chat.jsonl", [msg("c", "1", "ann", DAY, "kept")])
    write_lines(src / "b.chat.jsonl", [msg("d", "2", "ben", DAY, "first")])
    old1 = backup(repo, src, catalog=False)
    write_lines(src / "b.chat.jsonl", [msg("d", "2", "ben", DAY, "second")])
    old2 = backup(repo, src, catalog=False)
    result = run_index(repo, all_snapshots=True)
    assert [(i.old_id, i.stats.parts, i.stats.parts_reused) for i in result.indexed] == [(old1.id, 2, 0),
                                                                                         (old2.id, 1, 1)]
    new = {s.id: s for s in repo.snapshots()}
    assert set(new) == {i.new_id for i in result.indexed} and all(s.catalog for s in new.values())
    with MessageIndex(repo) as index:
        ids = [i.new_id for i in result.indexed]
        index.ensure(new.values())
        assert [(f.record.text, f.snapshots) for f in search(index, ids, Filters())] == [
            ("kept", ids), ("first", ids[:1]), ("second", ids[1:])]
    assert run_index(repo, all_snapshots=True).already == sorted(ids, key=lambda i: new[i].datetime)


def test_the_characters_that_case_fold_to_ascii_are_all_listed():
    from strongroom.messages.catalog_query import FOLDS_TO_ASCII
    assert FOLDS_TO_ASCII == "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000
                                     and any(ch.isascii() for ch in chr(c).casefold()))


@pytest.mark.parametrize("filters", [Filters(query="strasse"), Filters(query="STRASSE"), Filters(query="kelvin"),
                                     Filters(query="file"), Filters(query="deploy"), Filters(query="中文"),
                                     Filters(query='said "HI"'), Filters(author="ALICE"), Filters(author="Émile"),
                                     Filters(conversation="général"), Filters(conversation="ops", query="DEPLOY"),
                                     Filters(query="")])
def test_fast_chunk_filter_agrees_with_case_folding_every_record(filters):
    from strongroom.messages.catalog_format import decode_record, encode_record
    from strongroom.messages.catalog_query import _candidate_lines
    texts = ["Die Straße ist gesperrt", "the \u212aelvin scale", "a \ufb01le was deployed", "deploy now",
             "plain ascii", "中文 text", 'she said "hi"', "KEYS rotated", "ascii only"]
    messages = [Message("x", conv, str(i), author, i, False, text)
                for i, (text, author, conv) in enumerate(zip(texts * 3, ["alice", "émile", "ÉMILE", "Alice"] * 7,
                                                             ["ops", "général", "GÉNÉRAL"] * 9))]
    for chunk_messages in (messages[:9], messages[9:18], messages[18:], [m for m in messages if m.text.isascii()]):
        chunk = b"".join(encode_record(m) + b"\n" for m in chunk_messages)
        want = [m.message_id for m in chunk_messages if filters.matches(decode_record(encode_record(m), "t"))]
        lines = _candidate_lines(chunk, filters, filters.needles())
        got = [] if lines is None else [r.message_id for r in (decode_record(line, "t") for line in lines if line)
                                        if filters.matches(r)]
        assert got == want
    assert any(filters.matches(decode_record(encode_record(m), "t")) for m in messages)


def test_zipped_export_is_catalogued_member_by_member_and_reused_when_rezipped(repo, tmp_path, monkeypatch):
    import zipfile
    src = tmp_path / "src"
    src.mkdir()
    lines = "".join(json.dumps(m) + "\n" for m in [msg("c", "1", "ann", DAY, "inside a zip")])

    def rezip(stamp):
        with zipfile.ZipFile(src / "export.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(zipfile.ZipInfo("team.chat.jsonl", date_time=stamp), lines)
    rezip((2026, 1, 1, 0, 0, 0))
    s1 = backup(repo, src)
    read = []
    original = LineReader.messages
    monkeypatch.setattr(LineReader, "messages", lambda self, files, export: read.append(export.root) or
                        original(self, files, export))
    rezip((2026, 1, 2, 0, 0, 0))  # a new zip (other bytes), the same member
    s2 = backup(repo, src)
    assert read == [] and s2.catalog == s1.catalog and s2.tree != s1.tree
    with MessageIndex(repo) as index:
        index.ensure([s1, s2])
        [found] = search(index, [s1.id, s2.id], Filters(query="zip"))
        assert found.snapshots == [s1.id, s2.id]
        [part] = index.snapshot_parts(s2.id)
        assert index.part(part).source == "team.chat.jsonl"  # relative to the folder holding the export


def test_a_zip_member_is_known_by_its_stored_bytes(repo, tmp_path, monkeypatch):
    # spec §23.3: a member's content key comes from its stored (compressed) data, method, CRC and
    # size, so an unchanged member of a new zip is not inflated to be recognised; the same text
    # stored another way is read again, and gives the same catalogue
    import zipfile
    src = tmp_path / "src"
    src.mkdir()
    lines = "".join(json.dumps(msg("c", str(i), "ann", DAY + i, f"zipped {i}")) + "\n" for i in range(50))

    def rezip(stamp, method, text=lines):
        with zipfile.ZipFile(src / "export.zip", "w", method) as z:
            z.writestr(zipfile.ZipInfo("team.chat.jsonl", date_time=stamp), text, compress_type=method)
    read = []
    original = LineReader.messages
    monkeypatch.setattr(LineReader, "messages", lambda self, files, export: read.append(export.root) or
                        original(self, files, export))
    rezip((2026, 1, 1, 0, 0, 0), zipfile.ZIP_DEFLATED)
    first = backup(repo, src)
    rezip((2026, 1, 2, 0, 0, 0), zipfile.ZIP_STORED)  # the same text, stored: other stored bytes
    stored = backup(repo, src)
    rezip((2026, 1, 3, 0, 0, 0), zipfile.ZIP_STORED)  # the same stored bytes in a new zip
    again = backup(repo, src)
    rezip((2026, 1, 4, 0, 0, 0), zipfile.ZIP_STORED, lines.replace("zipped 7", "zipped 7, edited"))
    edited = backup(repo, src)
    assert [r.rpartition("src/")[2] for r in read] == ["export.zip/team.chat.jsonl"] * 3  # again: reused
    assert stored.catalog == again.catalog != edited.catalog

    def part(snap):  # the one part's content: its header (holding the part key), then its records
        [node] = repo.load_tree(bytes.fromhex(snap.catalog))
        while node.type == "dir":  # down the backed-up path, export.zip, to the member's part
            [node] = repo.load_tree(node.subtree)
        return list(repo.file_chunks(node))
    assert part(first)[1:] == part(stored)[1:] and part(first)[0] != part(stored)[0]  # only the key differs


def test_raw_data_stats_count_the_catalogue(repo, series, tmp_path):
    from strongroom.commands.stats import run_stats
    s1, s2, s3 = series
    plain = backup(repo, tmp_path / "src", catalog=False)  # the same files: the same tree, no catalogue
    assert plain.tree == s3.tree and plain.catalog is None
    trees, stack = 0, [bytes.fromhex(s3.catalog)]
    while stack:
        trees += 1
        stack += [n.subtree for n in repo.load_tree(stack.pop()) if n.type == "dir"]
    with_catalogue, without = (run_stats(repo, [s.id], mode="raw-data") for s in (s3, plain))
    assert with_catalogue.blobs - without.blobs == len(set(_catalogue_blobs(repo, s3))) + trees
    assert run_stats(repo, [s3.id]).files == run_stats(repo, [plain.id]).files == 1  # not a restored file


def test_an_archive_stored_member_wise_is_catalogued_from_its_members(repo, tmp_path):
    import zipfile
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "export.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("team.chat.jsonl", json.dumps(msg("c", "1", "ann", DAY, "a member-wise zip")) + "\n")
    snap = backup(repo, src, expand_archives=True)
    assert any(n.type == "archive" for n in _walk_nodes(repo, bytes.fromhex(snap.tree)))
    with MessageIndex(repo) as index:
        index.ensure([snap])
        [found] = search(index, [snap.id], Filters(query="member-wise"))
        assert found.record.author == "ann"
    assert run_check(repo).errors == []


def _walk_nodes(repo, tree_id):
    for node in repo.load_tree(tree_id):
        yield node
        if node.type == "dir":
            yield from _walk_nodes(repo, node.subtree)
