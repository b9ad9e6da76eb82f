"""Deduplication and change detection across backups of a chat export.

The export (about 6.5 MB) is built here, deterministically: a ~5 MB Mattermost-style JSONL file,
some JSON files and pseudo-random attachments behind real magic bytes. The repository uses the
default chunk sizes, as users get them."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

import strongroom.commands.backup as backup_module
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.ls import list_snapshot
from strongroom.commands.restore import run_restore
from strongroom.indexfile import open_index
from strongroom.pack import DATA, TREE

JSONL_LINES = 24_000
EDITED_LINE = JSONL_LINES // 2


def message(rng: random.Random, i: int) -> dict:
    words = ["ship it", "LGTM", "see the doc", "会议改到明天", "👍", "can you check the build?", "deploying now",
             "https://example.com/x/" + str(i), "@alice", "retro at 3pm", "thanks!", "rolling back"]
    return {"type": "post", "post": {"id": f"{rng.getrandbits(64):016x}", "channel": f"town-square-{i % 7}",
                                     "user": f"user{rng.randrange(12)}", "create_at": 1_790_000_000_000 + i * 6173,
                                     "message": " ".join(rng.choice(words) for _ in range(rng.randrange(3, 14))),
                                     "reactions": [] if i % 5 else [{"emoji": "tada", "user": "user3"}]}}


def jsonl_lines() -> list[bytes]:
    rng = random.Random(1)
    return [json.dumps(message(rng, i), ensure_ascii=False).encode() + b"\n" for i in range(JSONL_LINES)]


def build_export(root: Path) -> dict[str, bytes]:
    """Write the export; return {relative path: content}."""
    rng = random.Random(2)
    files = {
        "mattermost/export.jsonl": b"".join(jsonl_lines()),
        "telegram/result.json": json.dumps({"chats": [{"id": c, "messages": [message(rng, c * 1000 + m)
                                                                            for m in range(150)]}
                                                     for c in range(4)]}, indent=1).encode(),
        "telegram/chats/chat_001/photos/photo_1.jpg": b"\xff\xd8\xff\xe0" + rng.randbytes(400_000),
        "telegram/chats/chat_001/files/report.pdf": b"%PDF-1.7\n" + rng.randbytes(300_000),
        "slack/channels.json": json.dumps([{"id": f"C{i:04d}", "name": f"chan{i}"} for i in range(40)]).encode(),
        "slack/general/2026-11-01.json": json.dumps([message(rng, i) for i in range(300)]).encode(),
        "slack/__uploads/F01/diagram.png": b"\x89PNG\r\n\x1a\n" + rng.randbytes(250_000),
        "whatsapp/WhatsApp Chat with Bob.txt": "".join(f"01/11/2026, 10:{i % 60:02d} - Bob: hi {i}\n"
                                                        for i in range(3000)).encode(),
        "whatsapp/IMG-20261101-WA0001.jpg": b"\xff\xd8\xff\xe1" + rng.randbytes(200_000),
        "empty.txt": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.fixture
def export(tmp_path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "export"
    return root, build_export(root)


def blob_types(repo) -> dict[bytes, int]:
    """Every blob listed by the repository's index files, with its type."""
    out = {}
    for name, _ in repo.storage.list("index"):
        packs, _ = open_index(repo.master, repo.storage.load(name), name)
        for p in packs:
            for e in p.entries:
                out[e.id] = e.type
    return out


def added_by_type(before: dict[bytes, int], after: dict[bytes, int]) -> tuple[int, int]:
    """(data blobs, tree blobs) present after but not before."""
    new = [t for i, t in after.items() if i not in before]
    return new.count(DATA), new.count(TREE)


@pytest.fixture
def opened(monkeypatch) -> list[bytes]:
    """Paths the backup opens for reading, in order."""
    calls: list[bytes] = []
    real = backup_module.open_for_reading

    def spy(path: bytes) -> int:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(backup_module, "open_for_reading", spy)
    return calls


def depth_of(path: Path) -> int:
    """Trees on the way from the snapshot root to ``path``'s directory (each may change)."""
    return len(path.parent.parts)


def test_second_backup_of_same_export_adds_almost_nothing(repo, export, opened):
    root, files = export
    total = sum(len(d) for d in files.values())
    first = run_backup(repo, BackupOptions(paths=[str(root)]))
    s1 = first.summary
    assert (s1.files_new, s1.files_changed, s1.files_unchanged, s1.errors) == (len(files), 0, 0, 0)
    assert s1.bytes_read == s1.bytes_total == total
    assert s1.bytes_added > total // 10  # compressed, but real data was stored
    assert len(opened) == len(files)

    opened.clear()
    before = blob_types(repo)
    second = run_backup(repo, BackupOptions(paths=[str(root)]))
    s2 = second.summary
    assert second.snapshot.parent == first.snapshot.id
    assert (s2.files_new, s2.files_changed, s2.files_unchanged) == (0, 0, len(files))
    assert s2.bytes_read == 0 and s2.bytes_total == total
    assert opened == []  # nothing was even opened
    assert s2.bytes_added < s1.bytes_added / 100
    data_added, trees_added = added_by_type(before, blob_types(repo))
    assert data_added == 0
    assert trees_added == s2.blobs_added <= depth_of(root / "x")  # only ancestors whose metadata moved
    assert second.snapshot.tree == first.snapshot.tree or trees_added > 0


def test_editing_one_message_in_a_large_jsonl_adds_few_chunks(repo, export, opened, tmp_path):
    root, files = export
    jsonl = root / "mattermost/export.jsonl"
    assert len(files["mattermost/export.jsonl"]) > 4_500_000
    first = run_backup(repo, BackupOptions(paths=[str(root)]))
    st = os.stat(jsonl)

    lines = jsonl_lines()
    doc = json.loads(lines[EDITED_LINE])
    doc["post"]["message"] = "edited: this message was changed after the first backup (and got longer)"
    doc["post"]["edit_at"] = 1_790_000_999_000
    lines[EDITED_LINE] = json.dumps(doc, ensure_ascii=False).encode() + b"\n"
    new_content = b"".join(lines)
    jsonl.write_bytes(new_content)
    os.utime(jsonl, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    opened.clear()
    before = blob_types(repo)
    second = run_backup(repo, BackupOptions(paths=[str(root)]))
    s2 = second.summary
    assert opened == [os.fsencode(jsonl)]
    assert (s2.files_new, s2.files_changed, s2.files_unchanged) == (0, 1, len(files) - 1)
    assert s2.bytes_read == len(new_content)
    data_added, trees_added = added_by_type(before, blob_types(repo))
    assert 1 <= data_added <= 6
    assert data_added + trees_added == s2.blobs_added
    assert trees_added == depth_of(jsonl)  # every folder from the file's up to the root
    assert s2.bytes_added < first.summary.bytes_added / 50

    res = run_restore(repo, second.snapshot, str(tmp_path / "target"))
    assert res.errors == [] and res.files == len(files)
    assert (tmp_path / "target" / str(jsonl).lstrip("/")).read_bytes() == new_content


def test_force_rereads_everything_but_stores_no_data(repo, export, opened):
    root, files = export
    first = run_backup(repo, BackupOptions(paths=[str(root)]))
    opened.clear()
    before = blob_types(repo)
    forced = run_backup(repo, BackupOptions(paths=[str(root)], force=True))
    s = forced.summary
    assert forced.snapshot.parent == first.snapshot.id
    assert sorted(opened) == sorted(os.fsencode(root / rel) for rel in files)
    assert (s.files_new, s.files_changed, s.files_unchanged) == (0, len(files), 0)
    assert s.bytes_read == s.bytes_total == first.summary.bytes_total
    data_added, trees_added = added_by_type(before, blob_types(repo))
    assert data_added == 0
    assert trees_added == s.blobs_added <= depth_of(root / "x")


def test_touched_file_is_reread_but_adds_no_data(repo, export, opened):
    root, files = export
    photo = root / "telegram/chats/chat_001/photos/photo_1.jpg"
    run_backup(repo, BackupOptions(paths=[str(root)]))
    st = os.stat(photo)
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))

    opened.clear()
    before = blob_types(repo)
    second = run_backup(repo, BackupOptions(paths=[str(root)]))
    s = second.summary
    assert opened == [os.fsencode(photo)]
    assert (s.files_new, s.files_changed, s.files_unchanged) == (0, 1, len(files) - 1)
    assert s.bytes_read == len(files["telegram/chats/chat_001/photos/photo_1.jpg"])
    data_added, trees_added = added_by_type(before, blob_types(repo))
    assert data_added == 0
    # The file's node changed (mtime), so every tree from its folder up to the root is new.
    assert trees_added == s.blobs_added == depth_of(photo)


def test_same_content_elsewhere_is_stored_once(repo, export, tmp_path, opened):
    """A copy of the export under another path (no parent) is read in full but adds no data."""
    root, files = export
    run_backup(repo, BackupOptions(paths=[str(root)]))
    copy = tmp_path / "copy"
    for rel, data in files.items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    opened.clear()
    before = blob_types(repo)
    result = run_backup(repo, BackupOptions(paths=[str(copy)]))
    assert result.snapshot.parent is None  # different paths: no parent
    assert result.summary.files_new == len(files) and len(opened) == len(files)
    data_added, _ = added_by_type(before, blob_types(repo))
    assert data_added == 0


def test_duplicate_files_within_one_backup_are_stored_once(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    payload = b"\x89PNG\r\n\x1a\n" + random.Random(3).randbytes(3_000_000)
    for i in range(5):
        (src / f"copy{i}.png").write_bytes(payload)
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert result.summary.bytes_read == 5 * len(payload)
    chunks = [list(repo.file_chunks(e.node)) for e in list_snapshot(repo, result.snapshot, str(src))
              if e.node.type == "file"]
    assert len(chunks) == 5 and all(c == chunks[0] for c in chunks) and len(chunks[0]) >= 2
    data_blobs = sum(1 for t in blob_types(repo).values() if t == DATA)
    assert data_blobs == len(set(chunks[0]))
    assert result.summary.blobs_added == data_blobs + len(src.parts)  # + one tree per folder on the path

    one = tmp_path / "one"
    one.mkdir()
    (one / "only.png").write_bytes(payload)
    before = blob_types(repo)
    again = run_backup(repo, BackupOptions(paths=[str(one)]))
    assert again.summary.bytes_read == len(payload)
    assert added_by_type(before, blob_types(repo))[0] == 0


# -- parent selection ---------------------------------------------------------------------------


def test_parent_is_latest_snapshot_with_same_host_and_paths(repo, tmp_path, opened):
    x, y = tmp_path / "x", tmp_path / "y"
    for d in (x, y):
        d.mkdir()
        (d / "f.txt").write_text(f"content of {d.name}\n" * 100)
    a = run_backup(repo, BackupOptions(paths=[str(x)])).snapshot
    b = run_backup(repo, BackupOptions(paths=[str(y)])).snapshot
    assert (a.parent, b.parent) == (None, None)

    c = run_backup(repo, BackupOptions(paths=[str(x)])).snapshot
    assert c.parent == a.id and c.summary.files_unchanged == 1

    d = run_backup(repo, BackupOptions(paths=[str(x)])).snapshot
    assert d.parent == c.id  # the latest one, not the first

    # Paths are compared as a set of absolute paths: order and spelling do not matter.
    e = run_backup(repo, BackupOptions(paths=[str(y), str(x) + "/", str(x)])).snapshot
    assert e.paths == sorted([str(x), str(y)]) and e.parent is None
    f = run_backup(repo, BackupOptions(paths=[str(x), str(y)])).snapshot
    assert f.parent == e.id and f.summary.files_unchanged == 2

    other_host = run_backup(repo, BackupOptions(paths=[str(x)], hostname="elsewhere")).snapshot
    assert other_host.hostname == "elsewhere" and other_host.parent is None
    assert other_host.summary.files_new == 1
    again = run_backup(repo, BackupOptions(paths=[str(x)], hostname="elsewhere")).snapshot
    assert again.parent == other_host.id

    # Back on this host, the latest snapshot of x is still d (the other host's are ignored).
    g = run_backup(repo, BackupOptions(paths=[str(x)])).snapshot
    assert g.parent == d.id


def test_explicit_parent(repo, tmp_path, opened):
    x, y = tmp_path / "x", tmp_path / "y"
    for d in (x, y):
        d.mkdir()
        (d / "f.txt").write_text("same name, other folder\n")
    a = run_backup(repo, BackupOptions(paths=[str(x)])).snapshot
    b = run_backup(repo, BackupOptions(paths=[str(y)])).snapshot

    # An explicit parent that holds other paths: x's file has no previous node and is read.
    opened.clear()
    c = run_backup(repo, BackupOptions(paths=[str(x)], parent=b.id)).snapshot
    assert c.parent == b.id
    assert (c.summary.files_new, c.summary.files_unchanged) == (1, 0)
    assert opened == [os.fsencode(x / "f.txt")]

    # An explicit parent by id prefix, holding x: nothing is read.
    opened.clear()
    d = run_backup(repo, BackupOptions(paths=[str(x)], parent=a.id[:12])).snapshot
    assert d.parent == a.id and d.summary.files_unchanged == 1 and opened == []


def test_stdin_backup_has_no_parent(repo, tmp_path):
    import io
    a = run_backup(repo, BackupOptions(stdin=io.BytesIO(b"one"), stdin_filename="dump.sql")).snapshot
    b = run_backup(repo, BackupOptions(stdin=io.BytesIO(b"one"), stdin_filename="dump.sql")).snapshot
    assert a.paths == b.paths == ["/dump.sql"]
    assert b.parent is None
    assert b.summary.blobs_added == 1  # a new tree (the node's mtime is the backup time); the data is known
