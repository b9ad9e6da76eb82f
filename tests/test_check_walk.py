"""check's snapshot walk asks the index about a file's chunks a list at a time: it must still count
the blobs up to the first one that cannot be read, and name that one, as a one-by-one walk does."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands import check
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import CheckResult, _SnapshotWalker, run_check
from strongroom.config import Config
from strongroom.index import ScratchSet
from strongroom.pack import pack_path
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.testing.damage import flip_byte
from strongroom.tree import FILE, MAX_INLINE_CHUNKS

from conftest import PASSWORD, WEAK_KDF

SMALL_CHUNKS = ChunkingProfiles(ChunkerParams(64, 256, 1024), ChunkerParams(256, 1024, 4096))


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """A file long enough for three chunk-list blobs, and a small one with inline chunks."""
    tmp = tmp_path_factory.mktemp("walk")
    src = tmp / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(random.Random(3).randbytes(3 * MAX_INLINE_CHUNKS * 1024))
    (src / "small.bin").write_bytes(os.urandom(5000))
    repo = Repository.init(LocalStorage(tmp / "repo"), PASSWORD, kdf=WEAK_KDF, config=Config(chunking=SMALL_CHUNKS))
    snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    files = {}
    pending = [bytes.fromhex(snap.tree)]
    while pending:
        for node in repo.load_tree(pending.pop()):
            if node.type == FILE:
                files[node.name.decode()] = node
            elif node.subtree:
                pending.append(node.subtree)
    yield repo, snap, files
    repo.close()


def walk(repo, snap, lost_ids=()) -> CheckResult:
    result = CheckResult()
    with ScratchSet() as lost:
        for blob_id in lost_ids:
            lost.add(blob_id)
        walker = _SnapshotWalker(repo, result, lost)
        try:
            walker.walk(snap.id, bytes.fromhex(snap.tree))
        finally:
            walker.close()
    return result


def test_every_chunk_is_counted(listed):
    repo, snap, files = listed
    big, small = files["big.bin"], files["small.bin"]
    assert len(big.content_lists) == 3 and big.content == []
    assert small.content and not small.content_lists
    total = sum(len(list(repo.file_chunks(n))) for n in (big, small))
    result = walk(repo, snap)
    assert (result.blobs, result.errors) == (total, [])
    assert run_check(repo).blobs == total


@pytest.mark.parametrize("position", [0, MAX_INLINE_CHUNKS - 1, MAX_INLINE_CHUNKS + 7, "last"])
def test_the_first_lost_chunk_is_named_and_counted_up_to(listed, position):
    repo, snap, files = listed
    chunks = list(repo.file_chunks(files["big.bin"]))
    index = len(chunks) - 1 if position == "last" else position
    victim = chunks[index]
    assert chunks.index(victim) == index  # random data: no chunk repeats
    result = walk(repo, snap, [victim])
    small = len(files["small.bin"].content)
    assert result.blobs == index + 1 + small
    assert [(a.path.rsplit("/", 1)[1], a.reason) for a in result.affected] == [
        ("big.bin", f"blob {victim.hex()[:16]} is damaged or its pack is missing")]


def test_a_lost_chunk_list_is_named_before_any_chunk_is_counted(listed):
    repo, snap, files = listed
    second = files["big.bin"].content_lists[1]
    result = walk(repo, snap, [second])
    assert result.blobs == len(files["small.bin"].content)
    assert [a.reason for a in result.affected] == [f"blob {second.hex()[:16]} is damaged or its pack is missing"]


def test_read_data_walks_during_the_read_with_the_same_findings(listed, monkeypatch):
    """With nothing damaged, the walk that ran alongside the read is the answer; with damage, the
    walk after the read names the affected files (tests/test_check_read_data.py has more)."""
    repo, snap, files = listed
    plain = run_check(repo)
    threads = []
    real = check._check_snapshots

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)
    monkeypatch.setattr(check, "_check_snapshots", recording)
    deep = run_check(repo, read_data=True)
    assert threads and threads[0].startswith("check-walk") and len(threads) == 1
    assert (deep.snapshots, deep.trees, deep.blobs, deep.errors) == (plain.snapshots, plain.trees, plain.blobs, [])
    assert deep.blobs_read == sum(len(repo.index.pack_entries(p)) for p, _ in repo.index.iter_packs())

    victim = files["small.bin"].content[0]
    location = repo.index.lookup(victim)
    path = Path(repo.storage.root) / pack_path(location.pack)
    flip_byte(path, location.entry.offset + 3)
    try:
        threads.clear()
        damaged = run_check(repo, read_data=True)
    finally:
        flip_byte(path, location.entry.offset + 3)
    assert threads[-1] == "MainThread"  # walked again once the damage was known
    assert [(a.path.rsplit("/", 1)[1], a.reason) for a in damaged.affected] == [
        ("small.bin", f"blob {victim.hex()[:16]} is damaged or its pack is missing")]
    assert damaged.snapshots == plain.snapshots and damaged.blobs_read == deep.blobs_read


def test_an_interrupted_read_stops_the_walk_and_releases_the_lock(listed):
    repo, snap, files = listed

    def interrupt(progress):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_check(repo, read_data=True, progress=interrupt)
    assert [t.name for t in threading.enumerate() if t.name.startswith(("check-walk", "check_"))] == []
    assert list(repo.storage.list("locks")) == []
    assert run_check(repo, read_data=True).errors == []
