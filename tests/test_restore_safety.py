"""Restoring malicious or damaged snapshots must never write outside the target directory.

Trees are crafted as raw JSON (bypassing encode_tree's checks) and stored with the real blob
writer, or packed by hand when the index entry itself must lie. Every test restores into
``box/target`` and checks that ``box/sibling`` stays empty and that nothing else appears.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.ls import list_snapshot
from strongroom.commands.restore import run_restore
from strongroom.compression import NONE, ZSTD, compress_frame
from strongroom.errors import MaliciousTree, StrongroomError
from strongroom.indexfile import PackRecord
from strongroom.pack import DATA, TREE, PackWriter
from strongroom.snapshot import Snapshot
from strongroom.writer import BlobWriter

MTIME = 1_700_000_000_123_456_789


# -- crafting ------------------------------------------------------------------------------------


def store(repo, *blobs: tuple[int, bytes]) -> list[bytes]:
    with BlobWriter(repo) as w:
        ids = [w.add(t, data)[0] for t, data in blobs]
        w.flush()
    return ids


def store_with_entry(repo, blob_type: int, blob_id: bytes, compression: int, payload: bytes,
                     raw_length: int) -> None:
    """Pack one blob by hand, with whatever (possibly lying) header entry we like, and index it."""
    pw = PackWriter(repo.master)
    pw.add(blob_id, blob_type, compression, payload, raw_length)
    name, data = pw.finish()
    repo.store_pack(name, data)
    repo.save_index([PackRecord(name, len(data), pw.envelope, pw.entries)])


def name_field(name: bytes) -> dict:
    try:
        return {"name": name.decode("utf-8")}
    except UnicodeDecodeError:
        return {"name_b64": base64.b64encode(name).decode()}


def file_node(repo, name: bytes, content: bytes = b"payload", **extra) -> dict:
    (blob,) = store(repo, (DATA, content))
    return {"type": "file", **name_field(name), "mode": 0o644, "mtime_ns": MTIME, "size": len(content),
            "content": [blob.hex()], **extra}


def dir_node(name: bytes, subtree: bytes, **extra) -> dict:
    return {"type": "dir", **name_field(name), "mode": 0o755, "mtime_ns": MTIME, "subtree": subtree.hex(), **extra}


def link_node(name: bytes, target: bytes) -> dict:
    doc = {"type": "symlink", **name_field(name), "mtime_ns": MTIME}
    try:
        doc["target"] = target.decode("utf-8")
    except UnicodeDecodeError:
        doc["target_b64"] = base64.b64encode(target).decode()
    return doc


def raw_tree(*nodes: dict) -> bytes:
    """Tree bytes exactly as given: no sorting, no checks."""
    return json.dumps({"nodes": list(nodes)}, separators=(",", ":")).encode()


def tree(repo, *nodes: dict) -> bytes:
    return store(repo, (TREE, raw_tree(*nodes)))[0]


def snapshot(repo, tree_id: bytes) -> Snapshot:
    snap = Snapshot(time=datetime.now().astimezone().isoformat(), hostname="evil", username="mallory",
                    paths=["/x"], tree=tree_id.hex())
    repo.save_snapshot(snap)
    return snap


@pytest.fixture
def box(tmp_path) -> Path:
    b = tmp_path / "box"
    (b / "target").mkdir(parents=True)
    (b / "sibling").mkdir()
    return b


def everything(p: Path) -> list[str]:
    return sorted(str(q.relative_to(p)) for q in p.rglob("*"))


def assert_contained(box: Path) -> None:
    """Nothing but target/ and an empty sibling/ in the box; nothing new next to the box."""
    assert sorted(os.listdir(box)) == ["sibling", "target"]
    assert os.listdir(box / "sibling") == []
    assert sorted(os.listdir(box.parent)) == ["box", "cache", "repo"]


def restore(repo, snap, box: Path, **kw):
    return run_restore(repo, snap, str(box / "target"), **kw)


# -- unsafe names --------------------------------------------------------------------------------

BAD_NAMES = [b"..", b".", b"", b"../x", b"../sibling/evil", b"a/b", b"/abs", b"x\0y", b"\xff/../evil", b"/"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_unsafe_name_in_root_tree_is_refused(repo, box, name, kind):
    if name == b"/abs":
        name = os.fsencode(box / "sibling" / "evil")  # an absolute path into the sibling
    inner = tree(repo, file_node(repo, b"evil"))
    node = {"file": lambda: file_node(repo, name), "dir": lambda: dir_node(name, inner),
            "symlink": lambda: link_node(name, os.fsencode(box / "sibling"))}[kind]()
    snap = snapshot(repo, tree(repo, node))
    try:
        result = restore(repo, snap, box)
    except MaliciousTree:
        pass
    else:
        assert len(result.errors) == 1
        assert result.errors[0].startswith("/: ") and "refusing unsafe" in result.errors[0]
        assert (result.files, result.dirs, result.symlinks) == (0, 0, 0)
    assert_contained(box)
    assert everything(box / "target") == []


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_unsafe_name_in_nested_tree_spoils_only_that_tree(repo, box, name):
    if name == b"/abs":
        name = os.fsencode(box / "sibling" / "evil")
    bad = tree(repo, file_node(repo, b"aaa-fine-but-in-a-bad-tree"), file_node(repo, name, b"evil"))
    root = tree(repo, dir_node(b"bad", bad), file_node(repo, b"good.txt", b"good"))
    result = restore(repo, snapshot(repo, root), box)
    assert len(result.errors) == 1
    assert result.errors[0].startswith("/bad: ") and "refusing unsafe" in result.errors[0]
    assert result.files == 1
    assert everything(box / "target") == ["bad", "good.txt"]
    assert (box / "target/good.txt").read_bytes() == b"good"
    assert_contained(box)


@pytest.mark.parametrize("names, message", [
    ([b"a", b"a"], "duplicated or out of order"),
    ([b"b", b"a"], "duplicated or out of order"),
])
def test_duplicate_or_unsorted_names_are_refused(repo, box, names, message):
    nodes = [file_node(repo, n, b"first") for n in names]
    result = restore(repo, snapshot(repo, tree(repo, *nodes)), box)
    assert len(result.errors) == 1 and message in result.errors[0]
    assert everything(box / "target") == []
    assert_contained(box)


def test_duplicate_name_as_file_and_dir_is_refused(repo, box):
    inner = tree(repo, file_node(repo, b"f", b"through the dir"))
    root = tree(repo, dir_node(b"a", inner), file_node(repo, b"a", b"as a file"))
    result = restore(repo, snapshot(repo, root), box)
    assert len(result.errors) == 1 and "duplicated or out of order" in result.errors[0]
    assert everything(box / "target") == []
    assert_contained(box)


# -- symlinks ------------------------------------------------------------------------------------


def test_preexisting_symlink_named_like_a_snapshot_directory(repo, box):
    """target/data -> ../sibling exists; the snapshot has a directory data/ with a file in it."""
    os.symlink("../sibling", box / "target" / "data")
    root = tree(repo, dir_node(b"data", tree(repo, file_node(repo, b"f", b"written through the link?"))))
    with pytest.raises(MaliciousTree, match="symlink"):
        restore(repo, snapshot(repo, root), box)
    assert os.readlink(box / "target" / "data") == "../sibling"
    assert_contained(box)


def test_preexisting_symlink_deeper_in_the_target(repo, box):
    (box / "target" / "a" / "b").mkdir(parents=True)
    os.symlink(box / "sibling", box / "target" / "a" / "b" / "c")  # absolute
    root = tree(repo, dir_node(b"a", tree(repo, dir_node(b"b", tree(repo, dir_node(
        b"c", tree(repo, file_node(repo, b"f"))))))))
    with pytest.raises(MaliciousTree):
        restore(repo, snapshot(repo, root), box)
    assert_contained(box)


def test_preexisting_symlink_at_a_file_name_is_replaced_not_followed(repo, box):
    (box / "target" / "data").mkdir()
    (box / "sibling" / "victim").write_bytes(b"precious")
    os.symlink(box / "sibling" / "victim", box / "target" / "data" / "f")
    root = tree(repo, dir_node(b"data", tree(repo, file_node(repo, b"f", b"new content"),
                                             link_node(b"l", b"/etc/passwd"))))
    os.symlink(box / "sibling" / "victim", box / "target" / "data" / "l")
    result = restore(repo, snapshot(repo, root), box)
    assert result.errors == [] and (result.files, result.symlinks) == (1, 1)
    f = box / "target" / "data" / "f"
    assert not f.is_symlink() and f.read_bytes() == b"new content"
    assert os.readlink(box / "target" / "data" / "l") == "/etc/passwd"
    assert (box / "sibling" / "victim").read_bytes() == b"precious"
    assert os.listdir(box / "sibling") == ["victim"]


def test_symlink_from_one_snapshot_is_not_followed_by_the_next(repo, box):
    first = snapshot(repo, tree(repo, link_node(b"data", os.fsencode(box / "sibling"))))
    second = snapshot(repo, tree(repo, dir_node(b"data", tree(repo, file_node(repo, b"f", b"escape")))))
    result = restore(repo, first, box)
    assert result.errors == [] and result.symlinks == 1
    assert os.readlink(box / "target" / "data") == str(box / "sibling")
    with pytest.raises(MaliciousTree):
        restore(repo, second, box)
    assert_contained(box)


def test_preexisting_regular_file_where_a_directory_goes(repo, box):
    (box / "target" / "data").write_bytes(b"not a dir")
    root = tree(repo, dir_node(b"data", tree(repo, file_node(repo, b"f"))))
    with pytest.raises(MaliciousTree, match="regular file"):
        restore(repo, snapshot(repo, root), box)
    assert (box / "target" / "data").read_bytes() == b"not a dir"
    assert_contained(box)


@pytest.mark.parametrize("target", [b"", b"a\0b"], ids=["empty", "nul"])
def test_invalid_symlink_targets_are_refused(repo, box, target):
    snap = snapshot(repo, tree(repo, link_node(b"l", target)))
    with pytest.raises(MaliciousTree, match="invalid symlink target"):
        restore(repo, snap, box)
    assert everything(box / "target") == []
    assert_contained(box)


def test_symlinks_pointing_outside_are_restored_verbatim_and_never_followed(repo, box):
    root = tree(repo, link_node(b"abs", os.fsencode(box / "sibling")), link_node(b"rel", b"../sibling/x"),
                link_node(b"weird", b"caf\xe9/../../.."))
    result = restore(repo, snapshot(repo, root), box)
    assert result.errors == [] and result.symlinks == 3
    t = box / "target"
    assert [os.readlink(t / n) for n in ("abs", "rel")] == [str(box / "sibling"), "../sibling/x"]
    assert os.readlink(os.fsencode(t / "weird")) == b"caf\xe9/../../.."
    assert os.lstat(t / "rel").st_mtime_ns == MTIME
    assert_contained(box)


# -- damaged or lying trees ------------------------------------------------------------------------


def test_tree_claiming_a_huge_raw_length_is_refused(repo, box, monkeypatch):
    raw = raw_tree(file_node(repo, b"f"))
    blob_id = repo.master.blob_id(raw)
    store_with_entry(repo, TREE, blob_id, NONE, raw, 1 << 30)
    root = tree(repo, dir_node(b"big", blob_id), file_node(repo, b"ok", b"fine"))

    loaded = []
    real = repo.load_blob
    monkeypatch.setattr(repo, "load_blob", lambda i: loaded.append(i) or real(i))
    result = restore(repo, snapshot(repo, root), box)
    assert blob_id not in loaded  # refused before reading
    assert len(result.errors) == 1
    assert result.errors[0] == f"/big: tree {blob_id.hex()[:16]} claims {1 << 30} bytes"
    assert (box / "target" / "ok").read_bytes() == b"fine"
    assert_contained(box)

    # The same tree as the snapshot root.
    result = restore(repo, snapshot(repo, blob_id), box)
    assert result.errors == [f"/: tree {blob_id.hex()[:16]} claims {1 << 30} bytes"]


def test_tree_that_decompresses_beyond_its_recorded_length_is_refused(repo, box):
    bomb = raw_tree(file_node(repo, b"f")) + b" " * (8 << 20)  # valid JSON, 8 MiB of whitespace
    blob_id = repo.master.blob_id(bomb)
    store_with_entry(repo, TREE, blob_id, ZSTD, compress_frame(bomb), 4096)
    result = restore(repo, snapshot(repo, tree(repo, dir_node(b"d", blob_id))), box)
    assert len(result.errors) == 1 and result.errors[0].startswith("/d: ")
    assert "decompress" in result.errors[0] or "declares" in result.errors[0]
    assert_contained(box)


def test_data_blob_used_as_a_subtree_is_refused(repo, box):
    (data_id,) = store(repo, (DATA, raw_tree()))  # a valid tree's bytes, stored as data
    result = restore(repo, snapshot(repo, tree(repo, dir_node(b"d", data_id))), box)
    assert result.errors == [f"/d: blob {data_id.hex()[:16]} is not a tree"]


def test_missing_chunk_reports_error_removes_partial_file_and_continues(repo, box):
    missing = bytes(range(32))
    good = file_node(repo, b"b-good", b"fine")
    broken = file_node(repo, b"a-broken", b"first chunk")
    broken["content"].append(missing.hex())
    result = restore(repo, snapshot(repo, tree(repo, broken, good)), box)
    assert result.errors == [f"/a-broken: blob {missing.hex()[:16]} is not in the index (missing data)"]
    assert everything(box / "target") == ["b-good"]
    assert result.files == 1


def test_missing_snapshot_root_tree_is_an_error(repo, box):
    missing = bytes(32)
    result = restore(repo, snapshot(repo, missing), box)
    assert result.errors == [f"/: blob {missing.hex()[:16]} is not in the index (missing data)"]


@pytest.mark.parametrize("doc", [
    {"nodes": "not a list"},
    {"nodes": [{"type": "file"}]},
    {"nodes": [{"type": "device", "name": "x"}]},
    {"nodes": [{"type": "dir", "name": "x"}]},
    {"nodes": [{"type": "symlink", "name": "x"}]},
    {"nodes": [{"type": "file", "name": "x", "mode": "644"}]},
    {"nodes": [{"type": "file", "name": "x", "mode": True}]},
    {"nodes": [{"type": "file", "name": "x", "content": ["abcd"]}]},
    {"nodes": [{"type": "symlink", "name": "x", "target": "y", "content": ["00" * 32]}]},
    {"nodes": [{"type": "file", "name_b64": "!!!"}]},
    {"nodes": [{"type": "file", "name": 5}]},
    {"other": []},
    [],
], ids=lambda d: json.dumps(d)[:40])
def test_malformed_trees_are_reported(repo, box, doc):
    (bad,) = store(repo, (TREE, json.dumps(doc).encode()))
    root = tree(repo, dir_node(b"d", bad), file_node(repo, b"e", b"ok"))
    result = restore(repo, snapshot(repo, root), box)
    assert len(result.errors) == 1 and result.errors[0].startswith("/d: ")
    assert "malformed tree" in result.errors[0]
    assert everything(box / "target") == ["d", "e"]


def test_size_field_larger_than_content_gives_the_real_content(repo, box):
    node = file_node(repo, b"f", b"short", size=3 << 20)  # lies: preallocation must be undone
    result = restore(repo, snapshot(repo, tree(repo, node)), box)
    assert result.errors == []
    assert (box / "target" / "f").read_bytes() == b"short"


@pytest.mark.parametrize("field, value", [
    ("size", 2**70),       # os.posix_fallocate in RestoreTarget._write_chunks
    ("mtime_ns", 2**100),  # os.utime in RestoreTarget.set_metadata
])
def test_out_of_range_integers_are_reported_not_crashing(repo, box, field, value):
    node = file_node(repo, b"f", b"data", **{field: value})
    try:
        result = restore(repo, snapshot(repo, tree(repo, node, file_node(repo, b"g", b"ok"))), box)
    except StrongroomError:
        pass
    else:
        assert len(result.errors) >= 1
    assert_contained(box)


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership is only restored as root")
def test_out_of_range_uid_is_reported_not_crashing(repo, box):
    node = file_node(repo, b"f", b"data", uid=2**40)
    try:
        result = restore(repo, snapshot(repo, tree(repo, node)), box)
    except StrongroomError:
        pass
    else:
        assert len(result.errors) >= 1


# -- deep trees ------------------------------------------------------------------------------------


def chain(repo, depth: int) -> bytes:
    """A chain of ``depth`` nested directories named d, with a file at the bottom."""
    with BlobWriter(repo) as w:
        current = w.add(TREE, raw_tree(file_node(repo, b"bottom", b"deep")))[0]
        for _ in range(depth):
            current = w.add(TREE, raw_tree(dir_node(b"d", current)))[0]
        w.flush()
    return current


def remove_chain(top: Path) -> None:
    """Remove a linear chain of d/d/d/... without recursion (shutil.rmtree recurses)."""
    if not top.exists():
        return
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    stack = [fd]
    while True:
        names = os.listdir(stack[-1])
        if "d" in names:
            stack.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=stack[-1]))
            continue
        for n in names:
            os.unlink(n, dir_fd=stack[-1])
        break
    while len(stack) > 1:
        os.close(stack.pop())
        os.rmdir("d", dir_fd=stack[-1])
    os.close(stack.pop())


def test_tree_nested_beyond_max_depth_is_malicious(repo, box):
    snap = snapshot(repo, chain(repo, 4200))
    try:
        with pytest.raises(MaliciousTree, match="deeper than 4096"):
            restore(repo, snap, box)
        assert_contained(box)
    finally:
        remove_chain(box / "target" / "d")


def test_tree_nested_below_max_depth_restores(repo, box):
    snap = snapshot(repo, chain(repo, 1500))
    try:
        entries = list(list_snapshot(repo, snap))
        assert len(entries) == 1501
        result = restore(repo, snap, box)
        assert result.errors == [] and result.dirs == 1500 and result.files == 1
    finally:
        remove_chain(box / "target" / "d")


# -- include / exclude ---------------------------------------------------------------------------


@pytest.fixture
def export(tmp_path) -> Path:
    root = tmp_path / "export"
    files = {
        "telegram/result.json": b'{"chats": []}',
        "telegram/chats/chat_001/photos/photo_1.jpg": b"\xff\xd8\xff" + b"j" * 100,
        "telegram/chats/chat_001/blob.bin": b"\0" * 50,
        "telegram/dump.bin": b"bin",
        "slack/channels.json": b"[]",
        "slack/x.bin": b"slack bin",
        "notes.txt": b"notes",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "telegram" / "empty").mkdir()
    for d in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(d, ns=(MTIME, MTIME + len(d.parts)))
    return root


def restored_below(target: Path, root: Path) -> list[str]:
    base = target / str(root).lstrip("/")
    return everything(base)


@pytest.mark.parametrize("includes, excludes, expected", [
    (["telegram/**"], ["*.bin"],
     ["telegram", "telegram/chats", "telegram/chats/chat_001", "telegram/chats/chat_001/photos",
      "telegram/chats/chat_001/photos/photo_1.jpg", "telegram/empty", "telegram/result.json"]),
    (["telegram"], [],
     ["telegram", "telegram/chats", "telegram/chats/chat_001", "telegram/chats/chat_001/blob.bin",
      "telegram/chats/chat_001/photos", "telegram/chats/chat_001/photos/photo_1.jpg", "telegram/dump.bin",
      "telegram/empty", "telegram/result.json"]),
    ([], ["telegram", "*.json"], ["notes.txt", "slack", "slack/x.bin"]),
    (["*.jpg", "notes.txt"], [],
     ["notes.txt", "telegram", "telegram/chats", "telegram/chats/chat_001", "telegram/chats/chat_001/photos",
      "telegram/chats/chat_001/photos/photo_1.jpg"]),
    (["chat_001/*.bin"], [], ["telegram", "telegram/chats", "telegram/chats/chat_001",
                              "telegram/chats/chat_001/blob.bin"]),
])
def test_include_exclude_selection(repo, tmp_path, export, includes, excludes, expected):
    snap = run_backup(repo, BackupOptions(paths=[str(export)])).snapshot
    target = tmp_path / "target"
    result = run_restore(repo, snap, str(target), includes=includes, excludes=excludes)
    assert result.errors == []
    assert restored_below(target, export) == expected
    assert result.files == sum(1 for e in expected if "." in e.rsplit("/", 1)[-1])
    base = target / str(export).lstrip("/")
    for rel in expected:  # every restored entry, including parents restored for a child, has its mtime
        assert os.lstat(base / rel).st_mtime_ns == os.lstat(export / rel).st_mtime_ns, rel
        if (export / rel).is_file():
            assert (base / rel).read_bytes() == (export / rel).read_bytes()


def test_include_matching_nothing_restores_nothing(repo, tmp_path, export):
    snap = run_backup(repo, BackupOptions(paths=[str(export)])).snapshot
    target = tmp_path / "target"
    result = run_restore(repo, snap, str(target), includes=["no-such-thing"])
    assert result.errors == [] and (result.files, result.dirs) == (0, 0)
    assert everything(target) == []
