"""Archive nodes through the rest of the tool: check, prune, copy, ls, diff, stats, and the CLI."""

from __future__ import annotations

import gzip
import json

from archive_helpers import member_bytes, sha256, tree_files, write_tar, write_zip, gzip_file
from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS
from strongroom.archives.rebuild import segments
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.copy import CopySelection, run_copy
from strongroom.commands.diff import run_diff
from strongroom.commands.forget import run_forget
from strongroom.commands.ls import list_snapshot
from strongroom.commands.prune import MaxUnused, PruneOptions, run_prune
from strongroom.commands.restore import run_restore
from strongroom.commands.stats import run_stats
from strongroom.pack import TREE
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.storage import open_storage
from strongroom.tree import encode_tree
from strongroom.writer import BlobWriter
from test_cli import ok, run

MEMBERS = {f"c/{i}.json": member_bytes(f"r{i}", 5000 + 3000 * i) for i in range(6)}


def _sources(tmp_path, members=MEMBERS):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    write_zip(src / "slack.zip", members)
    write_tar(tmp_path / "z.tar", members)
    gzip_file(tmp_path / "z.tar", src / "zulip.tar.gz")
    return src


def _backup(repo, src):
    return run_backup(repo, BackupOptions(paths=[str(src)], expand_archives=True, force=True))


def _archive_node(repo, snap, src, name):
    return next(e.node for e in list_snapshot(repo, snap, str(src / name)))


def test_prune_after_forget_keeps_archive_blobs_and_check_passes(repo, tmp_path):
    src = _sources(tmp_path)
    kept = _backup(repo, src).snapshot
    originals = {n: sha256(src / n) for n in ("slack.zip", "zulip.tar.gz")}
    changed = dict(MEMBERS, **{"c/9.json": member_bytes("new", 40_000)})
    _sources(tmp_path, changed)
    gone = _backup(repo, src).snapshot
    run_forget(repo, snapshot_ids=[gone.id])
    result = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0)))
    assert result.plan.delete_packs or result.plan.repack_packs  # the forgotten snapshot's own blobs went
    check = run_check(repo, read_data=True)
    assert check.errors == [] and check.snapshots == 1
    res = run_restore(repo, kept, str(tmp_path / "out"))
    assert res.errors == [] and [a["restored"] for a in res.archives] == ["identical", "identical"]
    for name, digest in originals.items():
        assert sha256(tmp_path / "out" / str(src / name).lstrip("/")) == digest


def test_check_reports_a_missing_layout_blob_against_the_archive(repo, tmp_path):
    """A snapshot whose archive node names a layout blob the repository does not have."""
    src = _sources(tmp_path)
    snap = _backup(repo, src).snapshot
    node = _archive_node(repo, snap, src, "slack.zip")
    node.archive.layout = [bytes(32)] + node.archive.layout
    with BlobWriter(repo) as writer:
        tree = writer.add(TREE, encode_tree([node]))[0]
        writer.flush()
    repo.save_snapshot(Snapshot(time=snap.time, hostname="h", username="u", paths=["/x"], tree=tree.hex(),
                                tags=[], parent=None, summary=snap.summary))
    check = run_check(repo)
    assert len(check.errors) == 1 and check.errors[0].endswith(
        "/slack.zip: blob 0000000000000000 is not in the index (missing data)"), check.errors
    assert len(check.affected_snapshots) == 1


def test_copy_rewrites_archive_nodes_for_the_other_repository(repo, tmp_path):
    src = _sources(tmp_path)
    snap = _backup(repo, src).snapshot
    dst = Repository.init(open_storage(str(tmp_path / "dst")), b"other password", kdf=WEAK_KDF,
                          config=repo.config)
    with dst:
        [copied] = run_copy(repo, dst, CopySelection()).copied
        copy = dst.find_snapshot("latest")
        a, b = _archive_node(repo, snap, src, "slack.zip"), _archive_node(dst, copy, src, "slack.zip")
        assert a.archive.sha256 == b.archive.sha256 and a.archive.layout != b.archive.layout  # keyed ids differ
        assert len(list(segments(dst, b.archive))) == len(list(segments(repo, a.archive)))
        assert run_check(dst, read_data=True).errors == []
        res = run_restore(dst, copy, str(tmp_path / "out"))
        assert res.errors == [] and sha256(tmp_path / "out" / str(src / "slack.zip").lstrip("/")) == sha256(
            src / "slack.zip")
        res = run_restore(dst, copy, str(tmp_path / "exp"), expand=True)
        assert tree_files(tmp_path / "exp" / str(src / "zulip.tar.gz").lstrip("/")) == MEMBERS


def test_ls_lists_the_archive_and_its_members(repo, tmp_path):
    src = _sources(tmp_path)
    snap = _backup(repo, src).snapshot
    entries = {e.path.decode(): e for e in list_snapshot(repo, snap, str(src / "slack.zip"))}
    base = str(src / "slack.zip")
    assert sorted(entries) == [base, base + "/c"] + sorted(f"{base}/{m}" for m in MEMBERS)
    doc = entries[base].to_json()
    assert (doc["type"], doc["archive"]) == ("archive", {"format": "zip", "fidelity": "identical", "members": 6})
    assert entries[f"{base}/c/0.json"].to_json()["size"] == len(MEMBERS["c/0.json"])


def test_diff_shows_the_archive_and_the_member_that_changed(repo, tmp_path):
    src = _sources(tmp_path)
    a = _backup(repo, src).snapshot
    changed = dict(MEMBERS, **{"c/2.json": MEMBERS["c/2.json"] + b"edited\n"})
    write_zip(src / "slack.zip", changed)
    b = _backup(repo, src).snapshot
    changes = []
    run_diff(repo, a, b, changes.append)
    assert [(c.kind, c.path.decode()) for c in changes] == [
        ("modified", str(src / "slack.zip")), ("modified", str(src / "slack.zip/c/2.json"))]


def test_stats_counts_an_archive_as_one_file_and_all_its_blobs(repo, tmp_path):
    src = _sources(tmp_path)
    _backup(repo, src)
    restore_size = run_stats(repo)
    assert (restore_size.files, restore_size.restore_size) == (
        2, (src / "slack.zip").stat().st_size + (src / "zulip.tar.gz").stat().st_size)
    raw = run_stats(repo, mode="raw-data")
    assert raw.blobs == raw.repository_blobs  # every stored blob is reachable from the snapshot


def test_cli_backup_and_restore_report_archives(cli_env, tmp_path):
    ok(["init", *WEAK_KDF_ARGS], cli_env)
    src = _sources(tmp_path)
    (src / "broken.zip").write_bytes((src / "slack.zip").read_bytes()[:-30])
    proc = ok(["backup", str(src), "--expand-archives", "--json"], cli_env)
    doc = json.loads(proc.stdout)
    by_name = {a["path"].rsplit("/", 1)[1]: a for a in doc["archives"]}
    assert by_name["slack.zip"]["stored"] == "members" and by_name["zulip.tar.gz"]["fidelity"] == "identical"
    assert by_name["broken.zip"]["stored"] == "plain" and doc["summary"]["errors"] == 0
    assert "broken.zip: zip archive stored as a plain file" in proc.stderr
    proc = ok(["restore", "latest", "--target", str(tmp_path / "out"), "--json"], cli_env)
    restored = {a["path"].rsplit("/", 1)[1]: a["restored"] for a in json.loads(proc.stdout)["archives"]}
    assert restored == {"slack.zip": "identical", "zulip.tar.gz": "identical"}
    proc = ok(["restore", "latest", "--target", str(tmp_path / "exp"), "--expand"], cli_env)
    assert f"archive {src / 'slack.zip'}: zip, members, as a folder" in proc.stdout
    assert tree_files(tmp_path / "exp" / str(src / "slack.zip").lstrip("/")) == MEMBERS
    assert (tmp_path / "exp" / str(src / "broken.zip").lstrip("/")).read_bytes() == (src / "broken.zip").read_bytes()
    human = ok(["ls", "latest", str(src / "zulip.tar.gz"), "--long"], cli_env).stdout.splitlines()
    assert human[0].startswith("a") and human[0].endswith("[tar.gz, 6 members]")
    assert gzip.decompress((tmp_path / "out" / str(src / "zulip.tar.gz").lstrip("/")).read_bytes()) == (
        tmp_path / "z.tar").read_bytes()
