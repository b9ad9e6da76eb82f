"""repair index / packs / snapshots, and healing: a later backup re-supplies lost chunks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from strongroom.cli.commands import cli
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.repair import REPAIRED_TAG, rebuild_index, repair_snapshots, salvage_packs
from strongroom.commands.restore import run_restore
from strongroom.errors import UsageError
from strongroom.pack import DATA, TREE
from strongroom.testing.damage import flip_byte, objects, pack_regions

from conftest import PASSWORD


def write_source(root: Path, names: dict[str, int], seed: int = 0) -> None:
    for i, (rel, size) in enumerate(sorted(names.items())):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes([seed, i]) + os.urandom(size))


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "src"
    write_source(root, {"a.bin": 20_000, "b.bin": 30_000, "sub/c.bin": 40_000})
    return root


def data_pack(repo) -> Path:
    for pack, _ in repo.index.iter_packs():
        if repo.index.pack_entries(pack)[0].type == DATA:
            return Path(repo.storage.root) / "data" / pack[:2] / pack
    raise AssertionError


def restored(repo, snap, source: Path, target: Path) -> tuple[dict[str, bytes], list[str]]:
    if target.exists():
        shutil.rmtree(target)
    result = run_restore(repo, snap, str(target))
    base = target / str(source).lstrip("/")
    files = {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()} if base.exists() else {}
    return files, result.errors


def originals(source: Path) -> dict[str, bytes]:
    return {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()}


# -- repair index ------------------------------------------------------------------------------------


def test_rebuild_index_after_the_index_file_is_lost(repo, source, tmp_path):
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    packs_before = sorted(p for p, _ in repo.index.iter_packs())
    blobs_before = repo.index.counts()[0]
    (index_file,) = objects(repo.storage.root, "index")
    index_file.unlink()
    repo.sync_index()
    assert repo.index.counts() == (0, 0)
    assert not run_check(repo).ok

    result = rebuild_index(repo)
    assert (result.packs, result.blobs, result.unreadable) == (2, blobs_before, [])
    assert len(result.written) == 1 and result.removed == []
    assert sorted(p for p, _ in repo.index.iter_packs()) == packs_before
    assert run_check(repo, read_data=True).ok
    files, errors = restored(repo, snap, source, tmp_path / "out")
    assert errors == [] and files == originals(source)


def test_rebuild_index_replaces_a_damaged_index_file_and_deletes_it_last(repo, source):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    (old,) = objects(repo.storage.root, "index")
    flip_byte(old, 100)
    assert not run_check(repo).ok
    result = rebuild_index(repo)
    assert result.removed == [f"index/{old.name}"] and not old.exists()
    (new,) = objects(repo.storage.root, "index")
    assert result.written == [new.name]
    assert run_check(repo, read_data=True).ok


def test_rebuild_index_leaves_out_unreadable_packs(repo, source):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    pack = data_pack(repo)
    flip_byte(pack, pack_regions(pack)["header"][0] + 3)
    warnings = []
    result = rebuild_index(repo, warn=warnings.append)
    assert result.unreadable == [pack.name] and result.packs == 1
    assert len(warnings) == 1 and pack.name in warnings[0] and "repair packs" in warnings[0]


# -- healing ---------------------------------------------------------------------------------------------


def test_lost_pack_heals_after_repair_index_and_a_new_backup(repo, source, tmp_path):
    first = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    trees = repo.index.counts()[0] - 3
    data_pack(repo).unlink()
    check = run_check(repo)
    assert {a.path for a in check.affected} == {f"{source}/{r}" for r in ("a.bin", "b.bin", "sub/c.bin")}

    # Without repair the index still lists the lost chunks, so a backup would deduplicate
    # against them; repair index drops them ...
    rebuild_index(repo)
    assert repo.index.counts() == (trees, 1)
    # ... and the next backup of the unchanged source stores them again.
    second = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    assert second.summary.blobs_added == 3
    assert run_check(repo, read_data=True).ok
    for snap in (first, second):  # the old snapshot is whole again
        files, errors = restored(repo, snap, source, tmp_path / "out")
        assert errors == [] and files == originals(source)


def test_lost_pack_heals_with_a_new_backup_alone(repo, source, repo_path, tmp_path):
    """No repair needed: the backup notices the vanished pack, stores its chunks again, and a
    reader elsewhere (another cache, still pointing at the lost pack) finds the new copy."""
    from strongroom.repository import Repository
    from strongroom.storage import LocalStorage

    first = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    other = Repository.open(LocalStorage(repo_path), PASSWORD, cache_root=str(tmp_path / "other-cache"))
    lost = data_pack(repo)
    lost.unlink()
    warnings = []
    second = run_backup(repo, BackupOptions(paths=[str(source)]), warn=warnings.append).snapshot
    assert second.summary.blobs_added >= 3 and second.summary.files_changed == 3
    assert any("missing from storage" in w for w in warnings)
    check = run_check(repo, read_data=True)
    assert check.errors == [f"pack {lost.name}: listed in an index file but missing from storage"]
    for snap in (first, second):
        files, errors = restored(repo, snap, source, tmp_path / f"out-{snap.short_id}")
        assert errors == [] and files == originals(source)
    # the other cache still maps the chunks to the lost pack: reading finds the healed copy
    files, errors = restored(other, first, source, tmp_path / "out-other")
    assert errors == [] and files == originals(source)
    assert lost.name in other.index.missing_packs()
    other.close()
    # repair index drops the lost pack from the index files; then check is clean
    rebuild_index(repo)
    assert run_check(repo, read_data=True).ok


def test_damaged_pack_heals_after_repair_packs_and_a_new_backup(repo, source, tmp_path):
    first = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    pack = data_pack(repo)
    entries = repo.index.pack_entries(pack.name)
    victim = entries[1]
    flip_byte(pack, victim.offset + 5)

    result = salvage_packs(repo, [pack.name[:12]])
    assert (result.blobs_salvaged, result.blobs_lost) == (2, 1)
    assert result.lost == [victim.id.hex()] and result.removed == [pack.name] and not pack.exists()
    assert len(result.new_packs) == 1
    check = run_check(repo, read_data=True)
    assert len(check.affected) == 1 and check.errors == [
        f"snapshot {first.short_id} {check.affected[0].path}: blob {victim.id.hex()[:16]} is not in the index "
        "(missing data)"]

    second = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    # only the file whose chunk was lost is read again; the others are deduplicated
    assert (second.summary.files_changed, second.summary.files_unchanged) == (1, 2)
    assert second.summary.bytes_read == len((source / check.affected[0].path[len(str(source)) + 1:]).read_bytes())
    assert run_check(repo, read_data=True).ok
    files, errors = restored(repo, first, source, tmp_path / "out")
    assert errors == [] and files == originals(source)


def test_repair_packs_refuses_unknown_or_ambiguous_names(repo, source):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    with pytest.raises(UsageError, match="no pack named"):
        salvage_packs(repo, ["ffff" * 16])
    with pytest.raises(UsageError, match="invalid pack name"):
        salvage_packs(repo, ["xyz1"])


# -- repair snapshots -------------------------------------------------------------------------------------


def test_repair_snapshots_drops_only_the_lost_files(repo, source, tmp_path):
    snap = run_backup(repo, BackupOptions(paths=[str(source)], tags=["nightly"])).snapshot
    pack = data_pack(repo)
    lost_id = repo.index.pack_entries(pack.name)[0].id
    flip_byte(pack, 3)  # the first blob
    salvage_packs(repo, [pack.name])
    lost_file = next(r for r, data in originals(source).items() if repo.master.blob_id(data) == lost_id)

    dry = repair_snapshots(repo, dry_run=True)
    assert dry.rewritten == {snap.id: None} and len(dry.removed_paths) == 1
    assert len(list(repo.snapshot_ids())) == 1

    result = repair_snapshots(repo)
    assert result.removed_paths == [f"{snap.short_id} {source}/{lost_file}: chunk {lost_id.hex()[:16]} lost"]
    new_id = result.rewritten[snap.id]
    assert sorted(repo.snapshot_ids()) == sorted([snap.id, new_id])  # the original is kept
    new = repo.find_snapshot(new_id)
    assert new.tags == sorted(["nightly", REPAIRED_TAG]) and new.paths == snap.paths and new.time == snap.time
    files, errors = restored(repo, new, source, tmp_path / "out")
    expected = originals(source)
    del expected[lost_file]
    assert errors == [] and files == expected

    check = run_check(repo, read_data=True)
    assert check.affected_snapshots == {snap.id}  # only the original still misses data
    again = repair_snapshots(repo)  # idempotent: no second repaired copy
    assert again.rewritten == {snap.id: new_id} and len(list(repo.snapshot_ids())) == 2
    forgotten = repair_snapshots(repo, forget=True)
    assert forgotten.forgotten == [snap.id] and not (Path(repo.storage.root) / "snapshots" / snap.id).exists()
    assert len(forgotten.rewritten) == 1
    assert run_check(repo, read_data=True).ok


def test_repair_snapshots_drops_an_unreadable_directory(repo, source, tmp_path):
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    tree_id = bytes.fromhex(snap.tree)  # walk down to the tree of <source>/sub
    for part in [*str(source).strip("/").split("/"), "sub"]:
        tree_id = next(n for n in repo.load_tree(tree_id) if n.name == part.encode()).subtree
    tree_packs = [p for p, _ in repo.index.iter_packs() if repo.index.pack_entries(p)[0].type == TREE]
    (tree_pack,) = tree_packs
    entry = next(e for e in repo.index.pack_entries(tree_pack) if e.id == tree_id)
    flip_byte(Path(repo.storage.root) / "data" / tree_pack[:2] / tree_pack, entry.offset + 1)
    salvage_packs(repo, [tree_pack])
    result = repair_snapshots(repo)
    assert len(result.removed_paths) == 1 and result.removed_paths[0].startswith(f"{snap.short_id} {source}/sub: ")
    new = repo.find_snapshot(result.rewritten[snap.id])
    files, errors = restored(repo, new, source, tmp_path / "out")
    assert errors == [] and files == {k: v for k, v in originals(source).items() if not k.startswith("sub/")}


# -- command line ------------------------------------------------------------------------------------------


def test_repair_commands_on_the_command_line(repo, source, repo_path, tmp_path):
    run_backup(repo, BackupOptions(paths=[str(source)]))
    blobs = repo.index.counts()[0]
    pack = data_pack(repo)
    flip_byte(pack, 7)
    env = {"STRONGROOM_REPO": str(repo_path), "STRONGROOM_PASSWORD": PASSWORD.decode(),
           "STRONGROOM_CACHE_DIR": os.environ["STRONGROOM_CACHE_DIR"]}
    runner = CliRunner()
    out = runner.invoke(cli, ["check", "--read-data"], env=env)
    assert out.exit_code == 1
    out = runner.invoke(cli, ["repair", "packs", pack.name[:10]], env=env)
    assert out.exit_code == 0, out.output
    assert "salvaged 2 blob(s) into 1 new pack(s); 1 blob(s) lost; removed 1 damaged pack(s)" in out.output
    out = runner.invoke(cli, ["repair", "snapshots", "--forget"], env=env)
    assert out.exit_code == 0 and "1 snapshot(s) repaired, 1 item(s) dropped, 1 original(s) forgotten" in out.output
    out = runner.invoke(cli, ["repair", "index"], env=env)
    repo.sync_index()
    assert blobs < repo.index.counts()[0]  # the repaired trees were added
    assert out.exit_code == 0 and f"indexed 3 packs ({repo.index.counts()[0]} blobs)" in out.output, out.output
    out = runner.invoke(cli, ["check", "--read-data"], env=env)
    assert out.exit_code == 0, out.output


def test_lost_index_file_heals_with_the_next_backup_alone(repo, source, tmp_path):
    """Packs whose index file is gone are orphans; the next backup indexes them before it starts."""
    first = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    (index_file,) = objects(repo.storage.root, "index")
    index_file.unlink()
    repo.sync_index()
    assert not run_check(repo).ok
    second = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    assert second.summary.blobs_added == 0  # everything found again in the re-indexed packs
    assert run_check(repo, read_data=True).ok
    files, errors = restored(repo, first, source, tmp_path / "out")
    assert errors == [] and files == originals(source)


def test_repair_snapshots_forget_keeps_an_original_under_legal_hold(repo, source):
    from strongroom.commands.hold import place_holds
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    place_holds(repo, [snap.id], "case 42")
    pack = data_pack(repo)
    flip_byte(pack, 3)
    salvage_packs(repo, [pack.name])
    warnings = []
    result = repair_snapshots(repo, forget=True, warn=warnings.append)
    assert result.held == [snap.id] and result.forgotten == []
    assert warnings == [f"snapshot {snap.short_id} is under legal hold: original kept"]
    assert sorted(repo.snapshot_ids()) == sorted([snap.id, result.rewritten[snap.id]])
