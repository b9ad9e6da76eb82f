"""Prune: plan, execute, crash safety at every store and delete, and `forget --prune` end to end."""

from __future__ import annotations

import os
import random

import pytest

from conftest import PASSWORD, WEAK_KDF
from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.forget import run_forget
from strongroom.commands.prune import MaxUnused, PruneOptions, run_prune
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.errors import IntegrityError
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.storage.faulty import FaultyStorage, SimulatedCrash

SMALL = ChunkerParams(1024, 4096, 16384)
PACK_SIZE = 64 * 1024


def make_repo(path) -> Repository:
    config = Config(chunking=ChunkingProfiles(SMALL, SMALL), compression_level=1, pack_size=PACK_SIZE)
    return Repository.init(LocalStorage(path), PASSWORD, config=config, kdf=WEAK_KDF)


def write_files(root, seed: int, count: int = 6, size: int = 60_000) -> None:
    """Incompressible files; file i changes only when seed changes for it."""
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    for i in range(count):
        with open(os.path.join(root, f"f{i}.bin"), "wb") as f:
            f.write(rng.randbytes(size))


def backup(repo, src, tag=None):
    return run_backup(repo, BackupOptions(paths=[str(src)], tags=[tag] if tag else [])).snapshot


def tree_bytes(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
    return out


def restored(repo, snap, tmp_path, label) -> dict[str, bytes]:
    target = tmp_path / f"restore-{label}"
    result = run_restore(repo, snap, str(target))
    assert result.errors == []
    return tree_bytes(target)


def repo_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path / "data") for f in fs)


@pytest.fixture
def history(tmp_path):
    """Four snapshots of a changing directory; returns (repo, snapshots, expected contents)."""
    repo = make_repo(tmp_path / "repo")
    src = tmp_path / "src"
    snaps, contents = [], []
    for day in range(4):
        write_files(src, seed=day)
        snaps.append(backup(repo, src))
        contents.append(tree_bytes(src))
    yield repo, snaps, contents
    repo.close()


def test_prune_without_garbage_changes_nothing(history, tmp_path):
    repo, snaps, _ = history
    before = sorted(repo.storage.list("data"))
    result = run_prune(repo, PruneOptions())
    assert result.plan.delete_packs == [] and result.plan.repack_packs == [] and result.plan.orphan_packs == []
    assert result.packs_deleted == 0 and result.index_files_written == 0
    assert sorted(repo.storage.list("data")) == before


def test_forget_then_prune_shrinks_and_keeps_the_rest(history, tmp_path):
    repo, snaps, contents = history
    size_before = repo_bytes(tmp_path / "repo")
    forgotten = run_forget(repo, snapshot_ids=[snaps[0].id, snaps[1].id])
    assert forgotten.removed == [snaps[0].id, snaps[1].id]
    dry = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0), dry_run=True))
    assert dry.dry_run and dry.packs_deleted == 0
    assert repo_bytes(tmp_path / "repo") == size_before
    result = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0)))
    assert result.plan.delete_packs == dry.plan.delete_packs
    assert result.plan.repack_packs == dry.plan.repack_packs
    assert result.packs_deleted == len(dry.plan.delete_packs) + len(dry.plan.repack_packs)
    size_after = repo_bytes(tmp_path / "repo")
    # Two of four fully different snapshots gone: about half the data goes.
    assert size_after < size_before * 0.6
    assert size_after == result.plan.bytes_before - result.bytes_deleted + result.bytes_written
    assert run_check(repo, read_data=True).errors == []
    for i in (2, 3):
        assert restored(repo, repo.find_snapshot(snaps[i].id), tmp_path, i) == _under(contents[i], tmp_path)
    # A second prune finds nothing to do, and no unused space remains.
    again = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0)))
    assert again.plan.delete_packs == [] and again.plan.repack_packs == [] and again.plan.unused_bytes_before == 0


def _under(files: dict[str, bytes], tmp_path) -> dict[str, bytes]:
    """Restores land at target/<absolute source path>."""
    prefix = os.path.relpath(tmp_path / "src", "/")
    return {os.path.join(prefix, k): v for k, v in files.items()}


def _half_forgotten(tmp_path):
    """One snapshot holds many small files in few packs; the next drops every other file; the
    first is forgotten, so its packs are partly used. Return (repo, second snapshot, source)."""
    repo = make_repo(tmp_path / "repo")
    src = tmp_path / "src"
    write_files(src, seed=1, count=40, size=5000)
    first = backup(repo, src)
    for i in range(0, 40, 2):
        os.remove(src / f"f{i}.bin")
    second = backup(repo, src)
    run_forget(repo, snapshot_ids=[first.id])
    return repo, second, src


def test_partly_used_packs_are_repacked_until_max_unused(tmp_path):
    repo, second, src = _half_forgotten(tmp_path)
    expected = tree_bytes(src)
    plan = run_prune(repo, PruneOptions(dry_run=True)).plan
    assert plan.unused_bytes_before > 0 and plan.repack_packs
    result = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=5)))
    assert result.plan.unused_bytes_after <= 0.05 * result.plan.bytes_after
    check = run_prune(repo, PruneOptions(dry_run=True, max_unused=MaxUnused(percent=5))).plan
    assert check.unused_bytes_before <= 0.05 * check.bytes_before
    assert restored(repo, repo.find_snapshot(second.id), tmp_path, "2") == _under(expected, tmp_path)
    assert run_check(repo).errors == []
    repo.close()


def test_the_plan_counts_every_byte_of_unused_blobs(history):
    """With every snapshot forgotten, the unused bytes are exactly the stored blobs' lengths (a
    group's ciphertext once), as the pack headers give them."""
    from strongroom.pack import parse_header
    repo, snaps, _ = history
    run_forget(repo, snapshot_ids=[s.id for s in snaps])
    expected = 0
    for name, size in repo.storage.list("data"):
        data = repo.storage.load(name)
        expected += sum(e.length for e in parse_header(repo.master, data, size, name)[1] if not e.member_offset)
    plan = run_prune(repo, PruneOptions(dry_run=True)).plan
    assert expected > 0 and plan.unused_bytes_before == expected
    assert len(plan.delete_packs) == plan.packs_before


def test_max_repack_size_bounds_the_work(tmp_path):
    repo, _, _ = _half_forgotten(tmp_path)
    plan = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0), max_repack_size=PACK_SIZE * 2,
                                        dry_run=True)).plan
    assert 0 < plan.repack_bytes <= PACK_SIZE * 2
    unlimited = run_prune(repo, PruneOptions(max_unused=MaxUnused(), dry_run=True)).plan
    assert unlimited.repack_packs == []
    repo.close()


def test_max_unused_parsing():
    from strongroom.cli.commands import _size
    assert MaxUnused.parse("5%", _size) == MaxUnused(percent=5.0)
    assert MaxUnused.parse("unlimited", _size) == MaxUnused()
    assert MaxUnused.parse("10M", _size) == MaxUnused(size=10 * 1024 * 1024)
    assert MaxUnused(size=100).allows(100, 10) and not MaxUnused(size=100).allows(101, 10_000)
    assert MaxUnused(percent=5).allows(5, 100) and not MaxUnused(percent=5).allows(6, 100)


def test_prune_refuses_when_referenced_data_is_missing(history, tmp_path):
    repo, snaps, _ = history
    # Remove every index file: every referenced blob is now in no indexed pack.
    for name, _ in list(repo.storage.list("index")):
        repo.storage.delete(name)
    repo.sync_index()
    before = sorted(repo.storage.list("data"))
    with pytest.raises(IntegrityError):
        run_prune(repo, PruneOptions())
    assert sorted(repo.storage.list("data")) == before


def test_orphan_packs_are_deleted(history, tmp_path):
    repo, snaps, contents = history
    from strongroom.pack import DATA, PackWriter
    writer = PackWriter(repo.master)
    writer.add(b"\x01" * 32, DATA, 0, b"orphan", 6)
    name, data = writer.finish()
    repo.store_pack(name, data)
    result = run_prune(repo, PruneOptions())
    assert result.plan.orphan_packs == [name]
    assert name not in {n.rsplit("/", 1)[1] for n, _ in repo.storage.list("data")}
    assert run_check(repo).errors == []


def _crash_prune_setup(tmp_path):
    repo = make_repo(tmp_path / "repo")
    src = tmp_path / "src"
    write_files(src, seed=1, count=12, size=5000)
    first = backup(repo, src)
    for i in range(0, 12, 3):
        os.remove(src / f"f{i}.bin")
    write_files(src / "more", seed=2, count=2, size=20_000)
    keep = backup(repo, src)
    expected = _under(tree_bytes(src), tmp_path)
    run_forget(repo, snapshot_ids=[first.id])
    repo.close()
    return keep, expected


def _fresh_copy(pristine, target) -> None:
    import shutil
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)


@pytest.mark.parametrize("op,after", [("store", False), ("store", True), ("delete", False), ("delete", True)])
def test_crash_at_every_store_and_delete_of_a_prune(tmp_path, op, after):
    """Crash before (or just after) the n-th store/delete, for every n the prune performs; after
    each: check --read-data is clean, the kept snapshot restores byte-identically, and the next
    prune completes and leaves nothing behind."""
    from strongroom.locking import remove_stale_locks
    keep, expected = _crash_prune_setup(tmp_path)
    pristine = tmp_path / "pristine"
    os.rename(tmp_path / "repo", pristine)
    options = PruneOptions(max_unused=MaxUnused(percent=0), repack_small=True)
    # A clean run, counting the operations (the fault never fires at this position).
    _fresh_copy(pristine, tmp_path / "repo")
    counter = FaultyStorage(LocalStorage(tmp_path / "repo"), op=op, at=10**9)
    with Repository.open(counter, PASSWORD, cache_root=str(tmp_path / "cache-count")) as repo:
        clean = run_prune(repo, options)
    total = counter.count
    assert clean.packs_written >= 1 and clean.packs_deleted >= 3 and total >= 3
    for n in range(1, total + 1):
        _fresh_copy(pristine, tmp_path / "repo")
        storage = FaultyStorage(LocalStorage(tmp_path / "repo"), op=op, at=n, after=after)
        repo = Repository.open(storage, PASSWORD, cache_root=str(tmp_path / f"cache-{n}"))
        with pytest.raises(SimulatedCrash):
            run_prune(repo, options)
        repo.close()
        with Repository.open(LocalStorage(tmp_path / "repo"), PASSWORD,
                             cache_root=str(tmp_path / f"cache-after-{n}")) as fresh:
            remove_stale_locks(fresh, remove_all=True)  # the crashed process's lock
            assert run_check(fresh, read_data=True).errors == [], (op, n)
            assert restored(fresh, fresh.find_snapshot(keep.id), tmp_path, f"{n}") == expected, (op, n)
            if (op, n, after) == ("delete", 1, False):  # the superseding index file stored, nothing deleted
                pending = run_prune(fresh, PruneOptions(dry_run=True)).plan.superseded_index_files
                assert pending and pending == sorted(clean.plan.rewrite_index_files)
            run_prune(fresh, options)
            assert run_check(fresh, read_data=True).errors == [], (op, n)
            leftover = run_prune(fresh, PruneOptions(max_unused=MaxUnused(percent=0), dry_run=True)).plan
            assert (leftover.delete_packs, leftover.orphan_packs, leftover.superseded_index_files) == ([], [], []), \
                (op, n)
            assert restored(fresh, fresh.find_snapshot(keep.id), tmp_path, f"{n}-again") == expected, (op, n)


def test_prune_sweeps_only_stale_temporaries_of_killed_writers(history, tmp_path):
    repo, snaps, contents = history
    folder = tmp_path / "repo" / "data" / "ab"
    stale = folder / ("ab" * 32 + ".tmp-0123456789abcdef")
    fresh = folder / ("ab" * 32 + ".tmp-fedcba9876543210")
    stale_lock = tmp_path / "repo" / "locks" / ("cd" * 32 + ".tmp-00000000000000aa")
    for path in (stale, fresh, stale_lock):
        path.write_bytes(b"half a pack")
    old = os.stat(stale).st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(stale_lock, (old, old))

    dry = run_prune(repo, PruneOptions(dry_run=True))
    assert dry.temporaries_removed == 0 and stale.exists()
    result = run_prune(repo, PruneOptions())
    assert result.temporaries_removed == 2
    assert not stale.exists() and not stale_lock.exists()
    assert fresh.exists()  # may belong to a writer still taking its lock
    assert restored(repo, snaps[-1], tmp_path, "after-sweep") == _under(contents[-1], tmp_path)
