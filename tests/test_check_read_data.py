"""check --read-data: subsets, reporting of damaged packs with the snapshots and files they
affect, bounded walks of hostile tree graphs, restore --verify, and the command line."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from strongroom.cli.commands import cli
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.read_data import Subset
from strongroom.commands.restore import run_restore
from strongroom.commands.verify import verify_file
from strongroom.config import Config
from strongroom.errors import IntegrityError, UsageError
from strongroom.index import ScratchSet
from strongroom.pack import DATA, TREE
from strongroom.repository import Repository
from strongroom.restore_target import RestoreTarget
from strongroom.snapshot import Snapshot
from strongroom.storage import LocalStorage
from strongroom.testing.damage import flip_byte
from strongroom.writer import BlobWriter

from conftest import PASSWORD, WEAK_KDF


@pytest.fixture
def many_packs(repo_path, tmp_path):
    """A repository with 16 KiB packs: 12 data packs of one file each."""
    source = tmp_path / "src"
    source.mkdir()
    for i in range(12):
        (source / f"f{i:02}.bin").write_bytes(bytes([i]) + os.urandom(30_000))
    repo = Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF, config=Config(pack_size=16 * 1024))
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    yield repo, snap, source
    repo.close()


def pack_files(repo, blob_type: int | None = None) -> list[Path]:
    root = Path(repo.storage.root)
    return [root / "data" / p[:2] / p for p, _ in sorted(repo.index.iter_packs())
            if blob_type is None or repo.index.pack_entries(p)[0].type == blob_type]


# -- subsets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("10%", Subset("percent", value=10.0)), ("100%", Subset("percent", value=100.0)),
    ("2/7", Subset("part", n=2, t=7)), ("1/1", Subset("part", n=1, t=1)),
    ("500M", Subset("bytes", value=500 * 2**20)), ("2G", Subset("bytes", value=2 * 2**30)),
    ("1.5GiB", Subset("bytes", value=1.5 * 2**30)), ("4096", Subset("bytes", value=4096)),
])
def test_subset_specs(spec, expected):
    assert Subset.parse(spec) == expected


@pytest.mark.parametrize("spec", ["0%", "101%", "x%", "0/3", "4/3", "1/0", "a/b", "", "-5M", "5X", "0"])
def test_invalid_subset_specs(spec):
    with pytest.raises(UsageError, match="invalid subset"):
        Subset.parse(spec)


def test_parts_cover_every_pack_exactly_once(many_packs):
    repo, snap, source = many_packs
    total = len(pack_files(repo))
    assert total >= 10
    victim = pack_files(repo, DATA)[3]
    flip_byte(victim, 100)
    reads, reporting = [], []
    for n in (1, 2, 3):
        result = run_check(repo, subset=Subset.parse(f"{n}/3"))
        reads.append(result.packs_read)
        if any(victim.name in e for e in result.errors):
            reporting.append(n)
    assert sum(reads) == total  # (a part may be empty: pack names are random)
    assert reporting == [int(victim.name[:16], 16) % 3 + 1]


def test_percent_and_byte_subsets(many_packs):
    repo, snap, source = many_packs
    total = len(pack_files(repo))
    assert run_check(repo, subset=Subset.parse("50%")).packs_read == round(total / 2)
    assert run_check(repo, subset=Subset.parse("1%")).packs_read == 1
    assert run_check(repo, subset=Subset.parse("1")).packs_read == 1
    assert run_check(repo, subset=Subset.parse("100%")).packs_read == total
    full = run_check(repo, read_data=True)
    assert full.ok and full.packs_read == total and full.bytes_read == sum(p.stat().st_size for p in pack_files(repo))
    assert full.blobs_read == repo.index.counts()[0]


# -- reporting -----------------------------------------------------------------------------------------


def test_damage_is_traced_to_every_snapshot_and_file(many_packs):
    repo, first, source = many_packs
    (source / "new.txt").write_text("another file")
    second = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    shared_chunk = repo.master.blob_id((source / "f00.bin").read_bytes())  # in both snapshots
    pack = repo.locate(shared_chunk).pack
    victim = Path(repo.storage.root) / "data" / pack[:2] / pack
    entries = repo.index.pack_entries(pack)
    assert entries[0].id == shared_chunk
    flip_byte(victim, entries[0].offset + 20)
    result = run_check(repo, read_data=True)
    assert not result.ok
    assert result.damaged_packs == [{"pack": victim.name, "problems": ["content does not match its name"],
                                     "bad_blobs": [entries[0].id.hex()]}]
    lost_file = next(p for p in source.iterdir() if repo.master.blob_id(p.read_bytes()) == entries[0].id)
    assert sorted((a.snapshot, a.path) for a in result.affected) == sorted(
        [(first.id, str(lost_file)), (second.id, str(lost_file))])
    assert result.affected_snapshots == {first.id, second.id}
    # without --read-data the damage inside the pack is invisible (the structure is intact)
    assert run_check(repo).ok


def test_damaged_unindexed_pack_is_a_note_not_an_error(many_packs):
    repo, snap, source = many_packs
    victim = pack_files(repo, DATA)[0]
    orphan = victim.with_name("ab" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan = Path(repo.storage.root) / "data" / "ab" / ("ab" * 32)
    orphan.write_bytes(victim.read_bytes())  # a copy under a wrong name: damaged, and no index lists it
    result = run_check(repo, read_data=True)
    assert result.ok, result.errors
    assert any(orphan.name in n and "content does not match its name" in n for n in result.notes)


# -- hostile tree graphs ----------------------------------------------------------------------------------


def exponential_dag(repo, depth: int, leaf_content: bytes) -> bytes:
    """A tree whose every level holds two directories that are the same subtree: 2**depth paths
    but only ``depth + 1`` distinct trees."""
    with BlobWriter(repo) as w:
        chunk = w.add(DATA, leaf_content)[0]
        current = w.add(TREE, json.dumps({"nodes": [{"type": "file", "name": "leaf", "size": len(leaf_content),
                                                     "content": [chunk.hex()]}]}).encode())[0]
        for _ in range(depth):
            nodes = [{"type": "dir", "name": n, "subtree": current.hex()} for n in ("a", "b")]
            current = w.add(TREE, json.dumps({"nodes": nodes}, separators=(",", ":")).encode())[0]
        w.flush()
    return current


def save(repo, tree_id: bytes) -> Snapshot:
    snap = Snapshot(time=datetime.now().astimezone().isoformat(), hostname="h", username="u", paths=["/x"],
                    tree=tree_id.hex())
    repo.save_snapshot(snap)
    return snap


def test_exponential_tree_graph_is_checked_in_linear_time(repo):
    root = exponential_dag(repo, 60, b"\0leaf data")
    save(repo, root)
    result = run_check(repo, read_data=True)
    assert result.ok and result.trees == 61


def test_exponential_tree_graph_with_damage_stays_bounded(repo):
    root = exponential_dag(repo, 60, b"\0leaf data that will be lost")
    snap = save(repo, root)
    (data_pack,) = [p for p, _ in repo.index.iter_packs() if repo.index.pack_entries(p)[0].type == DATA]
    flip_byte(Path(repo.storage.root) / "data" / data_pack[:2] / data_pack, 3)
    result = run_check(repo, read_data=True)
    # one path per distinct tree is walked and reported: the deepest a/a/.../leaf
    assert [a.path for a in result.affected] == ["/" + "a/" * 60 + "leaf"]
    assert result.affected_snapshots == {snap.id} and result.trees == 61


def test_scratch_set_spills_to_disk():
    with ScratchSet(spill=10) as s:
        keys = [i.to_bytes(32, "big") for i in range(1000)]
        for k in keys + keys[:50]:
            s.add(k)
        assert len(s) == 1000
        assert all(k in s for k in keys) and (5000).to_bytes(32, "big") not in s
        assert sorted(s) == keys


# -- restore --verify ---------------------------------------------------------------------------------------


def test_verify_file_detects_any_difference(many_packs, tmp_path):
    repo, snap, source = many_packs
    run_restore(repo, snap, str(tmp_path / "out"))
    base = tmp_path / "out" / str(source).lstrip("/")
    nodes = {n.name.decode(): n for n in repo.load_tree(_subtree(repo, snap, source))}
    path = base / "f03.bin"
    assert verify_file(repo, os.fsencode(path), nodes["f03.bin"]) == 30_001
    flip_byte(path, 12_345)
    with pytest.raises(IntegrityError, match="bytes 0..30001 differ"):
        verify_file(repo, os.fsencode(path), nodes["f03.bin"])
    flip_byte(path, 12_345)
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(IntegrityError, match="longer"):
        verify_file(repo, os.fsencode(path), nodes["f03.bin"])
    os.truncate(path, 100)
    with pytest.raises(IntegrityError, match="shorter"):
        verify_file(repo, os.fsencode(path), nodes["f03.bin"])


def _subtree(repo, snap, source: Path) -> bytes:
    tree_id = bytes.fromhex(snap.tree)
    for part in str(source).strip("/").split("/"):
        tree_id = next(n for n in repo.load_tree(tree_id) if n.name == part.encode()).subtree
    return tree_id


def test_restore_verify_catches_bytes_that_landed_wrong(many_packs, tmp_path, monkeypatch):
    repo, snap, source = many_packs
    real = RestoreTarget._write_chunks

    def sloppy(fd, chunks, size_hint):  # a disk that silently changes one byte of one file
        chunks = [bytes(c) for c in chunks]
        written = real(fd, chunks, size_hint)
        if chunks and chunks[0][:1] == b"\x05":
            os.pwrite(fd, b"!", 500)
        return written

    monkeypatch.setattr(RestoreTarget, "_write_chunks", staticmethod(sloppy))
    plain = run_restore(repo, snap, str(tmp_path / "plain"))
    assert plain.errors == []  # without --verify nothing notices
    result = run_restore(repo, snap, str(tmp_path / "verified"), verify=True)
    assert result.errors == [f"{source}/f05.bin: verify: bytes 0..30001 differ from the snapshot"]
    assert result.verified == 11


# -- command line ------------------------------------------------------------------------------------------


def test_cli_check_read_data_and_restore_verify(many_packs, repo_path, tmp_path):
    repo, snap, source = many_packs
    env = {"STRONGROOM_REPO": str(repo_path), "STRONGROOM_PASSWORD": PASSWORD.decode(),
           "STRONGROOM_CACHE_DIR": os.environ["STRONGROOM_CACHE_DIR"]}
    runner = CliRunner()
    out = runner.invoke(cli, ["check", "--read-data"], env=env)
    assert out.exit_code == 0, out.output
    total = len(pack_files(repo))
    assert f"read {total} of {total} packs" in out.output and "/s)" in out.output
    halves = []
    for part in ("1/2", "2/2"):
        out = runner.invoke(cli, ["check", "--read-data-subset", part, "--json"], env=env)
        doc = json.loads(out.output)
        assert out.exit_code == 0 and doc["ok"] and doc["read_data"]["packs_stored"] == total
        halves.append(doc["read_data"]["packs_read"])
    assert sum(halves) == total
    out = runner.invoke(cli, ["check", "--read-data-subset", "7/3"], env=env)
    assert isinstance(out.exception, UsageError) and "need 1 <= n <= t" in str(out.exception)

    out = runner.invoke(cli, ["restore", "latest", "-t", str(tmp_path / "t"), "--verify"], env=env)
    assert out.exit_code == 0 and "12 files verified" in out.output, out.output

    victim = pack_files(repo, DATA)[0]
    entry = repo.index.pack_entries(victim.name)[0]
    flip_byte(victim, entry.offset + 1)
    lost = next(p for p in source.iterdir() if repo.master.blob_id(p.read_bytes()) == entry.id)
    out = runner.invoke(cli, ["check", "--read-data", "--json"], env=env)
    doc = json.loads(out.output)
    assert out.exit_code == 1 and not doc["ok"]
    assert doc["affected"] == [{"snapshot": snap.id, "path": str(lost),
                                "reason": f"blob {entry.id.hex()[:16]} is damaged or its pack is missing"}]
    out = runner.invoke(cli, ["restore", "latest", "-t", str(tmp_path / "t2")], env=env)
    assert out.exit_code == 1 and str(lost) in out.output
    restored = tmp_path / "t2" / str(source).lstrip("/")
    assert sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in source.iterdir() if p != lost)


def test_attempted_tree_cycle_is_refused(repo, tmp_path):
    """A cycle needs a tree that contains its own id. A writer with the key can claim any id in a
    pack header, but every read re-hashes the content, so the claimed self-reference fails."""
    from strongroom.indexfile import PackRecord
    from strongroom.pack import PackWriter
    claimed = bytes(range(32))  # the id the tree claims to have, and refers to
    body = json.dumps({"nodes": [{"type": "dir", "name": "loop", "subtree": claimed.hex()}]}).encode()
    writer = PackWriter(repo.master)
    writer.add(claimed, TREE, 0, body, len(body))
    name, data = writer.finish()
    repo.store_pack(name, data)
    repo.save_index([PackRecord(name, len(data), writer.envelope, writer.entries)])
    snap = save(repo, claimed)
    result = run_check(repo, read_data=True)
    assert [(a.path, a.reason) for a in result.affected] == [
        ("/", f"blob {claimed.hex()[:16]} is damaged or its pack is missing")]
    assert any("content does not match its id" in e for e in result.errors)
    restored = run_restore(repo, snap, str(tmp_path / "out"))
    assert restored.errors == [f"/: blob {claimed.hex()[:16]} in pack {name[:16]}: content does not match its id"]
    assert list((tmp_path / "out").iterdir()) == []
