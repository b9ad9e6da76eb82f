"""The restore pipeline: the walk plans ahead of the writing, one blob stream serves every file.

Runs span file boundaries (small files stored back to back come in one storage load), the bytes
in flight stay under the cap whatever the number of files, and the steps are carried out in walk
order: errors, counts and metadata come out as in a sequential restore.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom import fetcher as fetcher_mod
from strongroom.commands import restore as restore_mod
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.restore import run_restore
from strongroom.fetcher import BlobFetcher
from strongroom.pack import TREE
from strongroom.restore_target import RestoreTarget
from strongroom.tree import MAX_INLINE_CHUNKS, encode_chunk_list

from test_fetcher import counting, pack_file, store_blobs
from test_restore_safety import dir_node, file_node, snapshot, store, tree
from strongroom.testing.damage import flip_byte


def backup_files(repo, root: Path, contents: dict[str, bytes]):
    root.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return run_backup(repo, BackupOptions(paths=[str(root)])).snapshot


def test_small_files_stored_back_to_back_are_read_with_one_load(repo, tmp_path):
    contents = {f"f{i:03d}.bin": os.urandom(500 + 37 * i) for i in range(120)}  # incompressible, one chunk each
    snap = backup_files(repo, tmp_path / "src", contents)
    storage = counting(repo)
    result = run_restore(repo, snap, str(tmp_path / "out"))
    assert (result.files, result.errors) == (120, [])
    base = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert {p.name: p.read_bytes() for p in base.iterdir()} == contents
    data_packs = {repo.index.lookup(blob_id).pack for blob_id in
                  (repo.master.blob_id(data) for data in contents.values())}
    assert len(data_packs) == 1
    (pack,) = data_packs
    assert sum(pack in name for name, _, _ in storage.data_loads()) == 1  # 120 files, one read


def test_bytes_in_flight_stay_under_the_cap_across_many_files(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(restore_mod, "IN_FLIGHT_BYTES", 64 * 1024)
    monkeypatch.setattr(fetcher_mod, "MAX_RUN_BYTES", 16 * 1024)
    contents = {f"f{i:03d}.bin": os.urandom(6000 + i) for i in range(80)}  # ~490 kB in all
    snap = backup_files(repo, tmp_path / "src", contents)
    storage = counting(repo)
    loaded = []  # bytes loaded from data packs so far, each time a file starts being written
    written = [0]
    real_write_chunks = RestoreTarget._write_chunks

    def watching_write_chunks(fd, chunks, size_hint):
        loaded.append((sum(n for name, _, n in storage.data_loads() if n is not None), written[0]))
        n = real_write_chunks(fd, chunks, size_hint)
        written[0] += n
        return n

    monkeypatch.setattr(RestoreTarget, "_write_chunks", staticmethod(watching_write_chunks))
    result = run_restore(repo, snap, str(tmp_path / "out"))
    assert (result.files, result.errors) == (80, [])
    # Read ahead, but never more than the cap (plus the run that crossed it) beyond what is written.
    ahead = [read - done for read, done in loaded]
    assert max(ahead) <= 64 * 1024 + 16 * 1024 + 4096  # (+ the trees read meanwhile)
    assert max(ahead) > 6000  # and it does read ahead of the file being written


def test_errors_come_out_in_walk_order(repo, box_dirs):
    # /a is a file with a missing chunk (found while writing), /b a directory whose tree is
    # missing (found by the walk, which runs ahead): the errors still come in walk order.
    missing = bytes(range(32))
    broken = file_node(repo, b"a", b"first chunk")
    broken["content"].append(missing.hex())
    gone_tree = bytes(range(1, 33))
    good = file_node(repo, b"c", b"fine")
    snap = snapshot(repo, tree(repo, broken, dir_node(b"b", gone_tree), good))
    result = run_restore(repo, snap, str(box_dirs))
    assert result.errors == [f"/a: blob {missing.hex()[:16]} is not in the index (missing data)",
                             f"/b: blob {gone_tree.hex()[:16]} is not in the index (missing data)"]
    assert sorted(os.listdir(box_dirs)) == ["b", "c"] and result.files == 1
    # the same the other way round
    snap = snapshot(repo, tree(repo, dir_node(b"a", gone_tree), {**broken, "name": "b"}, good))
    result = run_restore(repo, snap, str(box_dirs.parent / "second"))
    assert result.errors == [f"/a: blob {gone_tree.hex()[:16]} is not in the index (missing data)",
                             f"/b: blob {missing.hex()[:16]} is not in the index (missing data)"]


def test_a_damaged_chunk_list_fails_only_its_file(repo, tmp_path):
    chunks = [os.urandom(64) + bytes([i % 256, i // 256]) for i in range(MAX_INLINE_CHUNKS + 10)]
    ids = store_blobs(repo, chunks)
    (list_id,) = store(repo, (TREE, encode_chunk_list(ids)))
    big = {**file_node(repo, b"big", b"x"), "content": [], "content_lists": [list_id.hex()],
           "size": sum(map(len, chunks))}
    before, after = file_node(repo, b"a", b"before"), file_node(repo, b"c", b"after")
    snap = snapshot(repo, tree(repo, before, big, after))
    out = tmp_path / "out"
    result = run_restore(repo, snap, str(out))
    assert result.errors == [] and (out / "big").read_bytes() == b"".join(chunks)
    flip_byte(pack_file(repo, list_id), repo.index.lookup(list_id).entry.offset + 3)
    result = run_restore(repo, snap, str(tmp_path / "out2"))
    assert len(result.errors) == 1 and result.errors[0].startswith(f"/big: blob {list_id.hex()[:16]} ")
    assert "authentication failed" in result.errors[0]
    assert sorted(os.listdir(tmp_path / "out2")) == ["a", "c"] and result.files == 2


def test_a_file_that_fails_part_way_does_not_disturb_the_next_ones(repo, tmp_path, monkeypatch):
    # Several files share runs; the middle one's chunk is damaged while later files' chunks are
    # already in flight: those are dropped for the failed file and the rest land intact.
    monkeypatch.setattr(fetcher_mod, "MAX_RUN_BYTES", 1 << 20)
    contents = {f"f{i}.bin": os.urandom(40_000 + i) for i in range(6)}
    snap = backup_files(repo, tmp_path / "src", contents)
    victim = repo.master.blob_id(contents["f2.bin"])
    entry = repo.index.lookup(victim).entry
    flip_byte(pack_file(repo, victim), entry.offset + 100)
    result = run_restore(repo, snap, str(tmp_path / "out"))
    assert len(result.errors) == 1 and "/f2.bin: blob" in result.errors[0]
    base = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert {p.name: p.read_bytes() for p in base.iterdir()} == {k: v for k, v in contents.items() if k != "f2.bin"}


def test_blob_stream_keeps_order_and_tags_and_reports_failures_in_place(repo):
    blobs = [os.urandom(3000 + i) for i in range(10)]
    ids = store_blobs(repo, blobs)
    missing = bytes(32)
    with BlobFetcher(repo) as fetcher:
        stream = fetcher.stream()
        for i, blob_id in enumerate(ids[:5] + [missing] + ids[5:]):
            stream.add(blob_id, i)
        stream.flush()
        got = [stream.take() for _ in range(11)]
        assert stream.pending == 0
        with pytest.raises(IndexError):
            stream.take()
    assert [tag for tag, _ in got] == list(range(11))
    assert [item for _, item in got[:5] + got[6:]] == blobs
    assert str(got[5][1]) == f"blob {missing.hex()[:16]} is not in the index (missing data)"


@pytest.fixture
def box_dirs(tmp_path) -> Path:
    target = tmp_path / "box" / "target"
    target.mkdir(parents=True)
    return target


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 2), (4, 3), (16, 4), (None, 1)])
def test_local_repositories_get_one_decoding_thread_per_spare_core(repo, monkeypatch, cpus, expected):
    monkeypatch.setattr(restore_mod.os, "cpu_count", lambda: cpus)
    assert restore_mod.decode_workers(repo.storage) == expected
    assert restore_mod.decode_workers(object()) == 4  # remote storage waits on requests: always four


def test_a_file_that_cannot_be_created_does_not_disturb_the_next_ones(repo, tmp_path):
    # The chunks of "a" are requested before its turn; a directory in the way makes it fail
    # before it is opened, and its chunks must not be handed to "b".
    contents = {"a": os.urandom(30_000), "b": os.urandom(30_000), "c": os.urandom(10)}
    snap = backup_files(repo, tmp_path / "src", contents)
    base = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    (base / "a").mkdir(parents=True)
    result = run_restore(repo, snap, str(tmp_path / "out"))
    assert len(result.errors) == 1 and result.errors[0].startswith(f"{tmp_path / 'src' / 'a'}: ")
    assert "directory" in result.errors[0]
    assert (base / "b").read_bytes() == contents["b"] and (base / "c").read_bytes() == contents["c"]
    assert result.files == 2
