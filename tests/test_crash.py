"""Crash safety by fault injection: a backup is "crashed" (FaultyStorage: nothing reaches the
storage from that call on) or sees one failing call, at every N-th storage operation in turn.

After each fault, with a fresh process view of the repository (new Repository, new cache):
``check --read-data`` passes (unindexed packs left by the crash are notes, not errors), every
snapshot committed before the crash restores byte-identically, and the next backup completes
and restores. The repository uses 64 KiB packs so one backup stores many packs and index
writes happen mid-backup, making the interesting interleavings frequent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.errors import StorageError
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.storage.faulty import FaultyStorage, SimulatedCrash
from strongroom import writer as writer_module

from conftest import PASSWORD, WEAK_KDF

PACK_SIZE = 64 * 1024


def write_tree(root: Path, version: int) -> None:
    """A small export: a few binary files (some changed per version) and chat-like text."""
    root.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(version)
    for i in range(6):
        keep = i < 3  # files 0..2 are the same in every version (dedup), 3..5 change
        seed = i if keep else 1000 * version + i
        data = __import__("random").Random(seed).randbytes(40_000 + 7_000 * i)
        (root / f"media_{i}.bin").write_bytes(b"\0" + data)
    chat = root / "chats"
    chat.mkdir(exist_ok=True)
    lines = [f'{{"id": {n}, "from": "user{rnd.randrange(9)}", "text": "message {n} of version {version}"}}'
             for n in range(1500)]
    (chat / "general.json").write_text("\n".join(lines))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def memory_backed_dir(prefix: str):
    """A temporary folder on tmpfs when there is one: these tests store and fsync hundreds of
    small objects, which on a real disk costs seconds and proves nothing more."""
    import tempfile
    folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=folder)


@pytest.fixture
def fast_tmp():
    with memory_backed_dir("strongroom-crash-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def template():
    """A repository with one committed snapshot of version 1, and the version-2 source."""
    holder = memory_backed_dir("strongroom-crash-template-")
    base = Path(holder.name)
    src1, src2 = base / "src1", base / "src2"
    write_tree(src1, 1)
    write_tree(src2, 2)
    repo_dir = base / "repo"
    with Repository.init(LocalStorage(repo_dir), PASSWORD, kdf=WEAK_KDF, config=Config(pack_size=PACK_SIZE),
                         cache_root=str(base / "cache0")) as repo:
        first = run_backup(repo, BackupOptions(paths=[str(src1)])).snapshot
    yield {"repo": repo_dir, "src1": src1, "src2": src2, "first": first.id, "expected1": tree_bytes(src1),
           "expected2": tree_bytes(src2)}
    holder.cleanup()


def restored_bytes(repo, snapshot_id: str, source: Path, target: Path) -> dict[str, bytes]:
    result = run_restore(repo, repo.find_snapshot(snapshot_id), str(target))
    assert result.errors == []
    return tree_bytes(target / str(source).lstrip("/"))


def faulty_call(template, work: Path, action, *, remove_locks: bool = True, **fault):
    """Copy the template repository and run ``action(repo)`` through a faulty storage (opening
    counts too: it lists and loads). Return (whether the fault fired, the exception, the copy)."""
    repo_dir = work / "repo"
    shutil.copytree(template["repo"], repo_dir)
    storage = FaultyStorage(LocalStorage(repo_dir), **fault)
    error = repo = None
    try:
        repo = Repository.open(storage, PASSWORD, cache_root=str(work / "cache"))
        action(repo)
    except (SimulatedCrash, StorageError) as e:
        error = e
    finally:
        try:
            if repo is not None:
                repo.close()
        except SimulatedCrash:
            pass
    if remove_locks:
        # The crashed "process" is this test process, whose pid lives on: remove its lock as
        # `unlock` would once the process is gone.
        for lock in (repo_dir / "locks").iterdir():
            lock.unlink()
    return storage.fired, error, repo_dir


def faulty_backup(template, work: Path, **fault) -> tuple[bool, BaseException | None, Path]:
    """A version-2 backup through a faulty storage (see faulty_call)."""
    return faulty_call(template, work, lambda repo: run_backup(repo, BackupOptions(paths=[str(template["src2"])])),
                       remove_locks=False, **fault)


def assert_recovers(template, repo_dir: Path, work: Path, context: str) -> None:
    with Repository.open(LocalStorage(repo_dir), PASSWORD, cache_root=str(work / "cache2")) as repo:
        result = run_check(repo, read_data=True)
        assert result.ok, f"{context}: {result.errors}"
        assert all("not in any index" in n for n in result.notes), f"{context}: {result.notes}"
        snapshots = {s.id: s for s in repo.snapshots()}
        assert template["first"] in snapshots, context
        assert restored_bytes(repo, template["first"], template["src1"], work / "r1") == template["expected1"], context
        for sid, snap in snapshots.items():  # a backup that did commit is complete too
            if sid != template["first"]:
                assert restored_bytes(repo, sid, template["src2"], work / f"r-{sid[:8]}") == template["expected2"]
        again = run_backup(repo, BackupOptions(paths=[str(template["src2"])])).snapshot
        assert restored_bytes(repo, again.id, template["src2"], work / "r2") == template["expected2"], context
        assert run_check(repo, read_data=True).ok, context


def sweep(template, tmp_path: Path, op: str, mode: str, after: bool = False, limit: int = 200) -> int:
    """Fault the N-th ``op`` for N = 1, 2, ... until a backup runs without reaching it."""
    for n in range(1, limit):
        work = tmp_path / f"{op}-{mode}-{after}-{n}"
        fired, error, repo_dir = faulty_backup(template, work, op=op, at=n, mode=mode, after=after)
        context = f"{op} #{n} ({mode}, after={after})"
        if not fired:
            assert error is None, f"{context}: {error!r}"
            return n - 1
        if mode == "crash":
            assert error is not None, f"{context}: the fault fired but the backup reported success"
        elif error is not None:  # a failure is one clear error (some are tolerated, e.g. a parent tree)
            assert isinstance(error, StorageError) and "simulated failure" in str(error), context
        assert_recovers(template, repo_dir, work, context)
        shutil.rmtree(work)
    raise AssertionError(f"{op}: still faulting after {limit} operations")


@pytest.fixture(autouse=True)
def small_index_flush(monkeypatch):
    # Write index files mid-backup as well, so crashes between them are covered.
    monkeypatch.setattr(writer_module, "INDEX_FLUSH_BLOBS", 8)


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_crash_at_every_store(template, fast_tmp, after):
    stores = sweep(template, fast_tmp, "store", "crash", after)
    assert stores >= 6  # lock, several packs, index files, the snapshot


def test_crash_at_every_delete(template, fast_tmp):
    assert sweep(template, fast_tmp, "delete", "crash") >= 1  # at least the lock release


def test_crash_at_every_list(template, fast_tmp):
    assert sweep(template, fast_tmp, "list", "crash") >= 3


def test_failure_at_every_store_is_a_clean_error(template, fast_tmp):
    assert sweep(template, fast_tmp, "store", "error") >= 6


@pytest.mark.slow
@pytest.mark.parametrize("op, mode, after", [
    ("load", "crash", False), ("load", "error", False), ("delete", "crash", True), ("list", "error", False),
    ("delete", "error", False), ("store", "error", True),
])
def test_fault_sweep_slow(template, fast_tmp, op, mode, after):
    sweep(template, fast_tmp, op, mode, after, limit=2000)


# -- prune ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prune_template(template):
    """The backup template plus a committed version-2 snapshot, with the version-1 snapshot
    forgotten: a prune has packs to delete and packs to repack."""
    holder = memory_backed_dir("strongroom-crash-prune-")
    base = Path(holder.name)
    repo_dir = base / "repo"
    shutil.copytree(template["repo"], repo_dir)
    with Repository.open(LocalStorage(repo_dir), PASSWORD, cache_root=str(base / "cache")) as repo:
        second = run_backup(repo, BackupOptions(paths=[str(template["src2"])])).snapshot
        repo.storage.delete(f"snapshots/{template['first']}")
    yield dict(template, repo=repo_dir, second=second.id)
    holder.cleanup()


def faulty_prune(template, work: Path, **fault):
    from strongroom.commands.prune import MaxUnused, PruneOptions, run_prune
    return faulty_call(template, work, lambda repo: run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0.0))),
                       **fault)


def assert_prune_recovers(template, repo_dir: Path, work: Path, context: str) -> None:
    from strongroom.commands.prune import MaxUnused, PruneOptions, run_prune
    with Repository.open(LocalStorage(repo_dir), PASSWORD, cache_root=str(work / "cache2")) as repo:
        result = run_check(repo, read_data=True)
        assert result.ok, f"{context}: {result.errors}"
        assert [s.id for s in repo.snapshots()] == [template["second"]], context
        assert restored_bytes(repo, template["second"], template["src2"], work / "r2") == template["expected2"]
        run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0.0)))  # a second prune finishes the job
        run_backup(repo, BackupOptions(paths=[str(template["src1"])]))
        result = run_check(repo, read_data=True)
        assert result.ok and result.notes == [], f"{context}: {result.errors} {result.notes}"
        assert restored_bytes(repo, template["second"], template["src2"], work / "r3") == template["expected2"]


@pytest.mark.parametrize("op, after", [("store", False), ("store", True), ("delete", False), ("delete", True)])
def test_crash_at_every_prune_operation(prune_template, fast_tmp, op, after):
    for n in range(1, 500):
        work = fast_tmp / f"prune-{op}-{after}-{n}"
        fired, error, repo_dir = faulty_prune(prune_template, work, op=op, at=n, mode="crash", after=after)
        context = f"prune: {op} #{n} (after={after})"
        if not fired:
            assert error is None, f"{context}: {error!r}"
            break
        assert isinstance(error, SimulatedCrash), f"{context}: {error!r}"
        assert_prune_recovers(prune_template, repo_dir, work, context)
        shutil.rmtree(work)
    assert n > 2, "prune did not store or delete anything"


# -- repair -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, after", [("store", False), ("store", True), ("delete", False), ("delete", True)])
def test_crash_at_every_step_of_repair_index(template, fast_tmp, op, after):
    from strongroom.commands.repair import rebuild_index
    for n in range(1, 200):
        work = fast_tmp / f"ri-{op}-{after}-{n}"
        fired, error, repo_dir = faulty_call(template, work, rebuild_index, op=op, at=n, after=after)
        if not fired:
            break
        context = f"repair index: {op} #{n} (after={after})"
        with Repository.open(LocalStorage(repo_dir), PASSWORD, cache_root=str(work / "c2")) as repo:
            result = run_check(repo, read_data=True)  # old, new or both index files: never a loss
            assert result.ok and result.notes == [], f"{context}: {result.errors} {result.notes}"
            assert restored_bytes(repo, template["first"], template["src1"], work / "r") == template["expected1"]
            rebuild_index(repo)
            assert len(list((repo_dir / "index").iterdir())) == 1
        shutil.rmtree(work)
    assert n > 2


@pytest.mark.parametrize("op, after", [("store", False), ("store", True), ("delete", False), ("delete", True)])
def test_crash_at_every_step_of_repair_packs(template, fast_tmp, op, after):
    from strongroom.commands.repair import rebuild_index, salvage_packs
    from strongroom.testing.damage import flip_byte
    damaged_tpl = fast_tmp / "damaged"
    shutil.copytree(template["repo"], damaged_tpl)
    with Repository.open(LocalStorage(damaged_tpl), PASSWORD, cache_root=str(fast_tmp / "c0")) as repo:
        pack = next(p for p, _ in sorted(repo.index.iter_packs()) if len(repo.index.pack_entries(p)) >= 2
                    and repo.index.pack_entries(p)[0].type == 0)
        victim = repo.index.pack_entries(pack)[0]
    flip_byte(damaged_tpl / "data" / pack[:2] / pack, victim.offset + 2)
    tpl = dict(template, repo=damaged_tpl)
    for n in range(1, 200):
        work = fast_tmp / f"rp-{op}-{after}-{n}"
        fired, error, repo_dir = faulty_call(tpl, work, lambda r: salvage_packs(r, [pack]), op=op, at=n,
                                             after=after)
        if not fired:
            break
        context = f"repair packs: {op} #{n} (after={after})"
        with Repository.open(LocalStorage(repo_dir), PASSWORD, cache_root=str(work / "c2")) as repo:
            if (repo_dir / "data" / pack[:2] / pack).exists():
                salvage_packs(repo, [pack])  # run again to finish
            else:
                rebuild_index(repo)
            result = run_check(repo, read_data=True)
            assert len(result.affected) == 1, f"{context}: {result.errors}"  # only the file of the lost chunk
            restore = run_restore(repo, repo.find_snapshot(template["first"]), str(work / "r"))
            assert len(restore.errors) == 1, context
            got = tree_bytes(work / "r" / str(template["src1"]).lstrip("/"))
            assert len(got) == len(template["expected1"]) - 1, context  # all but the lost chunk's file ...
            assert got == {k: template["expected1"][k] for k in got}, context  # ... byte-identical
        shutil.rmtree(work)
    assert n > 3

