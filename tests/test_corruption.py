"""Damage every kind of stored object, at many positions, and hold check and restore to account.

For each damage (a flipped byte or a truncation, made with strongroom.testing.damage and undone
afterwards): ``check --read-data`` must report it; ``restore`` must never write wrong bytes:
every file it writes equals the source, every file it does not write is named in its errors,
and the files it fails on are exactly the ones check listed as affected.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.restore import run_restore
from strongroom.crypto.keyfile import KeyInfo, create_key_file
from strongroom.errors import IntegrityError, StrongroomError, WrongPassword
from strongroom.pack import DATA, TREE
from strongroom.repository import Repository, object_name
from strongroom.storage import LocalStorage
from strongroom.testing.damage import flip_byte, objects, pack_regions, spread, truncate

from conftest import PASSWORD, WEAK_KDF

FILES = {"a.bin": 30_000, "b.bin": 41_000, "c.bin": 52_000, "sub/d.bin": 23_000, "sub/e.bin": 37_000,
         "sub/deeper/f.bin": 11_000}


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "src"
    for i, (rel, size) in enumerate(sorted(FILES.items())):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes([i]) + os.urandom(size))  # incompressible: one chunk per file
    return root


@pytest.fixture
def backed_up(repo, source):
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    return repo, snap, source


@contextmanager
def damaged(path: Path, damage):
    original = path.read_bytes()
    damage(path)
    try:
        yield
    finally:
        path.write_bytes(original)


def pack_of_type(repo, blob_type: int) -> Path:
    for pack, _ in repo.index.iter_packs():
        if repo.index.pack_entries(pack)[0].type == blob_type:
            return Path(repo.storage.root) / "data" / pack[:2] / pack
    raise AssertionError("no such pack")


def restore_outcome(repo, snap, source: Path, target: Path) -> tuple[set[str], set[str]]:
    """Restore and check it: return (paths named in errors, relative files restored)."""
    if target.exists():
        shutil.rmtree(target)
    result = run_restore(repo, snap, str(target))
    base = target / str(source).lstrip("/")
    restored = set()
    for rel in FILES:
        out = base / rel
        if out.exists():
            assert out.read_bytes() == (source / rel).read_bytes(), f"{rel}: wrong bytes restored"
            restored.add(rel)
    failed = {e.split(": ", 1)[0] for e in result.errors}
    for rel in set(FILES) - restored:  # every file not written is named (itself or a directory above it)
        full = f"{source}/{rel}"
        assert any(full == f or full.startswith(f.rstrip("/") + "/") for f in failed), (rel, result.errors)
    return failed, restored


def affected_paths(result) -> set[str]:
    return {a.path for a in result.affected}


def check_and_restore(repo, snap, source, target) -> tuple:
    result = run_check(repo, read_data=True)
    assert not result.ok
    failed, restored = restore_outcome(repo, snap, source, target)
    assert failed == affected_paths(result), (failed, result.affected)
    return result, failed, restored


# -- packs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["blobs", "header", "envelope", "trailer"])
def test_flipped_byte_in_data_pack(backed_up, tmp_path, region):
    repo, snap, source = backed_up
    path = pack_of_type(repo, DATA)
    start, end = pack_regions(path)[region]
    for offset in spread(start, end, 7):
        with damaged(path, lambda p: flip_byte(p, offset)):
            result, failed, restored = check_and_restore(repo, snap, source, tmp_path / "out")
            assert any(path.name in e for e in result.errors), result.errors
            if region == "blobs":  # exactly one blob, so exactly one file
                assert len(failed) == 1 and len(restored) == len(FILES) - 1, (offset, failed)
            else:  # restore reads blobs through the index: header damage loses nothing
                assert failed == set() and len(restored) == len(FILES)
    assert run_check(repo, read_data=True).ok


@pytest.mark.parametrize("region", ["blobs", "header", "trailer"])
def test_flipped_byte_in_tree_pack(backed_up, tmp_path, region):
    repo, snap, source = backed_up
    path = pack_of_type(repo, TREE)
    start, end = pack_regions(path)[region]
    for offset in spread(start, end, 5):
        with damaged(path, lambda p: flip_byte(p, offset)):
            result, failed, restored = check_and_restore(repo, snap, source, tmp_path / "out")
            assert any(path.name in e for e in result.errors)
            if region == "blobs":
                assert failed and len(restored) < len(FILES)


@pytest.mark.parametrize("cut", [-1, -13, -40, 0.5, 1, 0])
def test_truncated_data_pack(backed_up, tmp_path, cut):
    repo, snap, source = backed_up
    path = pack_of_type(repo, DATA)
    size = path.stat().st_size
    new_size = int(size * cut) if isinstance(cut, float) else (size + cut if cut < 0 else cut)
    with damaged(path, lambda p: truncate(p, new_size)):
        result, failed, restored = check_and_restore(repo, snap, source, tmp_path / "out")
        assert any(path.name in e for e in result.errors)
        if new_size <= size // 2:
            assert len(failed) >= 3


def test_missing_pack_names_every_affected_file(backed_up, tmp_path):
    repo, snap, source = backed_up
    path = pack_of_type(repo, DATA)
    with damaged(path, lambda p: p.unlink()):
        result, failed, restored = check_and_restore(repo, snap, source, tmp_path / "out")
        assert failed == {f"{source}/{rel}" for rel in FILES} and restored == set()
        assert result.damaged_packs == [{"pack": path.name, "problems": ["missing from storage"], "bad_blobs": []}]
        assert result.affected_snapshots == {snap.id}


# -- index files, snapshots, keys, config --------------------------------------------------------------


@pytest.mark.parametrize("how", ["flip-start", "flip-middle", "flip-end", "truncate"])
def test_damaged_index_file(backed_up, tmp_path, monkeypatch, how):
    repo, snap, source = backed_up
    (path,) = objects(repo.storage.root, "index")
    size = path.stat().st_size
    damage = {"flip-start": lambda p: flip_byte(p, 0), "flip-middle": lambda p: flip_byte(p, size // 2),
              "flip-end": lambda p: flip_byte(p, -1), "truncate": lambda p: truncate(p, size - 10)}[how]
    with damaged(path, damage):
        result = run_check(repo, read_data=True)
        assert not result.ok and any(path.name in e for e in result.errors)
        # A reader with a cold cache cannot use the index file: every file is named, none is wrong.
        monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cold"))
        with Repository.open(LocalStorage(repo.storage.root), PASSWORD) as cold:
            assert len(cold.damaged_index_files) == 1
            cold_result = run_check(cold, read_data=True)
            assert {a.path for a in cold_result.affected} >= {"/"}
            assert sum(1 for n in cold_result.notes if "not in any index" in n) == 2
            failed, restored = restore_outcome(cold, snap, source, tmp_path / "out")
            assert failed == {"/"} and restored == set()


@pytest.mark.parametrize("offset", [0, 4, 20, 40, -17, -1])
def test_damaged_snapshot_file(backed_up, tmp_path, offset):
    repo, snap, source = backed_up
    (path,) = objects(repo.storage.root, "snapshot")
    with damaged(path, lambda p: flip_byte(p, offset)):
        result = run_check(repo, read_data=True)
        assert not result.ok
        assert result.errors == [f"snapshot {snap.short_id}: snapshots/{snap.id}: content does not match its name "
                                 "(damaged)"]
        with pytest.raises(IntegrityError, match="does not match its name"):
            repo.find_snapshot(snap.short_id)


def test_damaged_snapshot_file_truncated(backed_up):
    repo, snap, source = backed_up
    (path,) = objects(repo.storage.root, "snapshot")
    with damaged(path, lambda p: truncate(p, 30)):
        result = run_check(repo, read_data=True)
        assert len(result.errors) == 1 and snap.short_id in result.errors[0]


def add_second_key(repo) -> Path:
    data = create_key_file(repo.master, b"second password", KeyInfo("full", "2026-11-22T00:00:00+00:00", "h", "u"),
                           WEAK_KDF)
    name = f"keys/{object_name(data)}"
    repo.storage.store(name, data)
    return Path(repo.storage.root) / name


@pytest.mark.parametrize("how", ["flip-first", "flip-middle", "flip-last", "truncate"])
def test_damaged_key_file(backed_up, how):
    repo, snap, source = backed_up
    other = add_second_key(repo)
    size = other.stat().st_size
    damage = {"flip-first": lambda p: flip_byte(p, 0), "flip-middle": lambda p: flip_byte(p, size // 2),
              "flip-last": lambda p: flip_byte(p, -2), "truncate": lambda p: truncate(p, size // 3)}[how]
    with damaged(other, damage):
        with Repository.open(LocalStorage(repo.storage.root), PASSWORD) as again:  # the intact key still opens
            result = run_check(again, read_data=True)
        assert not result.ok
        assert len(result.errors) == 1 and result.errors[0].startswith(f"keys/{other.name}")


def test_damaged_only_key_file_is_refused_or_reported(backed_up):
    """Damage to the secret or the KDF fields locks the repository (one clear error); damage to
    the unauthenticated descriptive fields (host, time) still opens, and check reports it."""
    repo, snap, source = backed_up
    (path,) = objects(repo.storage.root, "key")
    refused = reported = 0
    for offset in spread(0, path.stat().st_size, 15):
        with damaged(path, lambda p: flip_byte(p, offset)):
            try:
                again = Repository.open(LocalStorage(repo.storage.root), PASSWORD)
            except (WrongPassword, IntegrityError) as e:
                assert "key" in str(e)
                refused += 1
                continue
            with again:
                result = run_check(again)
            assert result.errors == [f"keys/{path.name}: content does not match its name (damaged)"]
            reported += 1
    assert refused + reported == 15 and refused >= 8


@pytest.mark.parametrize("how", ["flip-0", "flip-4", "flip-10", "flip-50", "flip-last", "truncate-20", "truncate-60"])
def test_damaged_config_refuses_to_open(backed_up, how):
    repo, snap, source = backed_up
    (path,) = objects(repo.storage.root, "config")
    kind, amount = how.split("-")
    n = -1 if amount == "last" else int(amount)
    damage = (lambda p: flip_byte(p, n)) if kind == "flip" else (lambda p: truncate(p, n))
    with damaged(path, damage):
        with pytest.raises(StrongroomError) as info:
            Repository.open(LocalStorage(repo.storage.root), PASSWORD).close()
        assert "config" in str(info.value) or isinstance(info.value, WrongPassword)


# -- hostile blobs (written with the key: what a malicious writer could do) -----------------------------


def test_data_blob_zstd_bomb_is_capped_and_reported(backed_up, tmp_path):
    """A data chunk whose zstd frame expands to 64 MiB while its entry claims 4 KiB."""
    import json as _json
    import resource

    from strongroom.compression import ZSTD, compress_frame
    from strongroom.indexfile import PackRecord
    from strongroom.pack import PackWriter
    from strongroom.snapshot import Snapshot
    from strongroom.writer import BlobWriter

    repo, snap, source = backed_up
    bomb = b"\0" * (64 << 20)
    bomb_id = repo.master.blob_id(bomb[:4096])  # the id of what the entry claims
    writer = PackWriter(repo.master)
    writer.add(bomb_id, DATA, ZSTD, compress_frame(bomb), 4096)
    name, data = writer.finish()
    repo.store_pack(name, data)
    repo.save_index([PackRecord(name, len(data), writer.envelope, writer.entries)])
    tree = _json.dumps({"nodes": [{"type": "file", "name": "bomb", "size": 4096, "content": [bomb_id.hex()]}]})
    with BlobWriter(repo) as w:
        tree_id = w.add(TREE, tree.encode())[0]
        w.flush()
    evil = Snapshot(time="2026-11-22T00:00:00+00:00", hostname="evil", username="m", paths=["/bomb"],
                    tree=tree_id.hex())
    repo.save_snapshot(evil)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_check(repo, read_data=True)
    assert [(a.snapshot, a.path) for a in result.affected] == [(evil.id, "/bomb")]
    assert any(name in e and "decompress" in e for e in result.errors), result.errors
    restored = run_restore(repo, evil, str(tmp_path / "out"))
    assert len(restored.errors) == 1 and restored.errors[0].startswith("/bomb: ")
    assert not (tmp_path / "out" / "bomb").exists()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 48, f"peak memory grew by {grown_mib:.0f} MiB"
