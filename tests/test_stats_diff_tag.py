"""stats, diff and tag."""

from __future__ import annotations

import json
import os

import pytest

from conftest import PASSWORD
from strongroom.commands.diff import run_diff
from strongroom.commands.hold import load_holds, place_holds
from strongroom.commands.stats import run_stats
from strongroom.commands.tag import new_tags, run_tag
from strongroom.errors import UsageError
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from test_forget import run
from test_prune import backup, make_repo


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def two(tmp_path):
    repo = make_repo(tmp_path / "repo")
    src = tmp_path / "src"
    _write(src / "same.txt", b"unchanged\n" * 100)
    _write(src / "grows.txt", b"a" * 1000)
    _write(src / "gone.txt", b"bye" * 10)
    _write(src / "sub" / "deep.bin", os.urandom(3000))
    _write(src / "dup1.bin", b"z" * 50_000)
    a = backup(repo, src)
    _write(src / "grows.txt", b"a" * 1500)
    os.remove(src / "gone.txt")
    _write(src / "new" / "hello.txt", b"hello")
    os.chmod(src / "same.txt", 0o600)
    b = backup(repo, src)
    yield repo, a, b, src
    repo.close()


def test_diff_reports_added_removed_modified_and_totals(two):
    repo, a, b, src = two
    changes = []
    totals = run_diff(repo, a, b, changes.append)
    root = os.fsencode(src)
    got = [(c.kind, c.path[len(root):], c.size_before, c.size_after) for c in changes if c.path.startswith(root + b"/")]
    assert got == [
        ("removed", b"/gone.txt", 30, None),
        ("modified", b"/grows.txt", 1000, 1500),
        ("added", b"/new", None, None),
        ("added", b"/new/hello.txt", None, 5),
        ("metadata", b"/same.txt", 1000, 1000),
    ]
    assert (totals.added_files, totals.removed_files, totals.modified_files, totals.added_dirs) == (1, 1, 1, 1)
    assert totals.added_bytes == 5 and totals.removed_bytes == 30
    assert totals.size_change == 500 + 5 - 30


def test_diff_of_a_snapshot_with_itself_is_empty(two):
    repo, a, _, _ = two
    changes = []
    totals = run_diff(repo, a, a, changes.append)
    assert changes == [] and totals.size_change == 0


def test_stats_restore_size_and_raw_data(two):
    repo, a, b, _ = two
    one = run_stats(repo, [a.id], mode="restore-size")
    assert one.files == 5 and one.restore_size == 1000 + 1000 + 30 + 3000 + 50_000
    assert one.blobs is None and one.repository_packs is None
    both = run_stats(repo, [], mode="raw-data")
    assert both.files == 5 + 5
    assert both.restore_size == one.restore_size + (1000 + 1500 + 3000 + 50_000 + 5)
    # Distinct data is far less than twice one snapshot: most chunks are shared.
    assert both.raw_bytes < one.restore_size * 1.2
    assert both.dedup_ratio > 1.5
    # 50 000 repeated bytes compress well.
    assert both.compression_ratio > 1.5
    assert both.packs <= both.repository_packs
    assert both.repository_pack_bytes == sum(size for _, size in repo.storage.list("data"))
    assert both.repository_blobs == repo.index.counts()[0]
    assert both.blobs == both.repository_blobs  # nothing unreferenced yet


def test_new_tags():
    assert new_tags(["a", "b"], ["c", "a"], [], None) == ["a", "b", "c"]
    assert new_tags(["a", "b"], [], ["a"], None) == ["b"]
    assert new_tags(["a"], [], [], ["x", "y"]) == ["x", "y"]
    assert new_tags(["a"], [], [], []) == []


def test_tag_rewrites_the_snapshot_and_moves_its_hold(two):
    repo, a, b, _ = two
    place_holds(repo, [a.id], "audit")
    changes = run_tag(repo, [a.id[:8]], add=["keep", "q1"])
    assert len(changes) == 1 and changes[0].old_id == a.id and changes[0].tags == ["keep", "q1"]
    new_id = changes[0].new_id
    assert set(repo.snapshot_ids()) == {new_id, b.id}
    fresh = repo.load_snapshot(new_id)
    assert fresh.tags == ["keep", "q1"] and fresh.tree == a.tree and fresh.time == a.time
    assert list(load_holds(repo)) == [new_id]
    assert load_holds(repo)[new_id].reason == "audit"
    unchanged = run_tag(repo, [new_id], add=["keep"])
    assert unchanged[0].new_id is None and set(repo.snapshot_ids()) == {new_id, b.id}
    with pytest.raises(UsageError):
        run_tag(repo, [b.id])
    with pytest.raises(UsageError):
        run_tag(repo, [b.id], set_to=["x"], add=["y"])


def test_cli_stats_diff_tag(two, monkeypatch, capsys, tmp_path):
    repo, a, b, _ = two
    monkeypatch.setenv("STRONGROOM_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    code, out, _ = run(["stats", "--mode", "raw-data", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["files"] == 10 and doc["mode"] == "raw-data" and "dedup_ratio" in doc
    code, out, _ = run(["diff", a.id[:8], b.id[:8], "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["totals"]["modified_files"] == 1
    assert [c["kind"] for c in doc["changes"]].count("added") == 2
    code, out, _ = run(["diff", a.id[:8], b.id[:8]], capsys)
    assert "M    " in out and "(+500 bytes)" in out and out.splitlines()[-1].startswith("files: 1 added")
    code, out, _ = run(["tag", "--set", "x", b.id[:8]], capsys)
    assert code == 0 and out.startswith(f"{b.id[:8]} -> ")
    with Repository.open(LocalStorage(tmp_path / "repo"), PASSWORD) as fresh:
        assert sorted(s.tags for s in fresh.snapshots()) == [[], ["x"]]


def test_tag_and_forget_keep_the_snapshot_chain_verifiable(two):
    from strongroom.chain import verify_chain
    from strongroom.commands.forget import run_forget
    repo, a, b, _ = two
    # Re-tag the older snapshot (the newer one is its group's head), then forget the newer one.
    new_id = run_tag(repo, [a.id], add=["x"])[0].new_id
    report = verify_chain(repo)
    assert report.problems == []
    run_forget(repo, snapshot_ids=[b.id])
    assert verify_chain(repo).problems == []
    assert set(repo.snapshot_ids()) == {new_id}
