"""copy: snapshots into another repository (local and S3, both ways), only missing chunks,
re-encrypted under the destination's keys, already-copied snapshots skipped, byte-identical
restores, and deduplication with direct backups thanks to init --copy-chunker-params-from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS
from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.copy import CopySelection, run_copy
from strongroom.config import Config
from strongroom.errors import SnapshotNotFound
from strongroom.repository import Repository
from strongroom.storage import open_storage
from test_s3 import make_tree, run, tree_digest

OTHER_PASSWORD = b"another password for the off-site copy"


def backup(repo: Repository, path: Path, host: str, tags: list[str] = ()) -> str:
    return run_backup(repo, BackupOptions(paths=[str(path)], hostname=host, tags=list(tags))).snapshot.id


def restore_digest(env: dict, snapshot: str, target: Path, source: Path) -> dict[str, str]:
    run(env, "restore", snapshot, "--target", str(target))
    return tree_digest(target / source.relative_to("/"))


def test_copy_local_to_local_cli(tmp_path, cli_env) -> None:
    src_url, dst_url = str(tmp_path / "src-repo"), str(tmp_path / "dst-repo")
    source = make_tree(tmp_path / "data")
    (tmp_path / "from-pw").write_text(PASSWORD.decode() + "\n")
    src_env = dict(cli_env, STRONGROOM_REPO=src_url)
    dst_env = dict(cli_env, STRONGROOM_REPO=dst_url, STRONGROOM_PASSWORD=OTHER_PASSWORD.decode())
    run(src_env, "init", *WEAK_KDF_ARGS, "--text-chunks", "1K:4K:16K")
    run(src_env, "backup", str(source), "--host", "alpha", "--tag", "daily")
    run(src_env, "backup", str(source), "--host", "beta")
    run(dst_env, "init", *WEAK_KDF_ARGS, "--copy-chunker-params-from", src_url,
        "--from-password-file", str(tmp_path / "from-pw"))

    out = json.loads(run(dst_env, "copy", "--from-repo", src_url, "--from-password-file",
                         str(tmp_path / "from-pw"), "--host", "alpha", "--json").stdout)
    assert len(out["copied"]) == 1 and out["skipped"] == [] and out["blobs_added"] > 0
    alpha_src = out["copied"][0]["source"]
    alpha_copy = out["copied"][0]["copy"]
    assert alpha_copy != alpha_src  # re-encrypted under the destination's keys: another object

    # everything: alpha is skipped, beta copied and deduplicated (same content, no new data)
    out = json.loads(run(dst_env, "copy", "--from-repo", src_url, "--from-password-command",
                         f"cat {tmp_path / 'from-pw'}", "--json").stdout)
    assert [c["source"] for c in out["skipped"]] == [alpha_src]
    assert out["skipped"][0]["copy"] == alpha_copy
    assert len(out["copied"]) == 1 and out["blobs_read"] == 0  # all chunks found via the id map
    assert out["blobs_added"] == 0  # same trees, same chunks

    snaps = json.loads(run(dst_env, "snapshots", "--json").stdout)
    assert sorted(s["hostname"] for s in snaps) == ["alpha", "beta"]
    assert {s["original"] for s in snaps} == {alpha_src, out["copied"][0]["source"]}
    assert [s["tags"] for s in snaps if s["hostname"] == "alpha"] == [["daily"]]
    assert restore_digest(dst_env, alpha_copy[:12], tmp_path / "out", source) == tree_digest(source)
    assert "no errors" in run(dst_env, "check", "--read-data").stdout

    # a third run copies nothing; the source password is checked
    out = json.loads(run(dst_env, "copy", "--from-repo", src_url, "--json",
                         "--from-password-file", str(tmp_path / "from-pw")).stdout)
    assert out["copied"] == [] and len(out["skipped"]) == 2
    (tmp_path / "bad-pw").write_text("nope\n")
    proc = run(dst_env, "copy", "--from-repo", src_url, "--from-password-file", str(tmp_path / "bad-pw"),
               check=False)
    assert proc.returncode == 12 and proc.stderr.startswith("strongroom: wrong password")
    proc = run(dict(dst_env, STRONGROOM_FROM_PASSWORD=""), "copy", "--from-repo", src_url, check=False)
    assert proc.returncode == 2 and "STRONGROOM_FROM_PASSWORD is set but empty" in proc.stderr


def test_copy_dedups_with_direct_backups_and_reads_only_new_chunks(tmp_path) -> None:
    chunking = ChunkingProfiles(ChunkerParams(1024, 4096, 16384), ChunkerParams(16384, 65536, 262144))
    source = make_tree(tmp_path / "data", files=12, size=200_000)
    src = Repository.init(open_storage(str(tmp_path / "a")), PASSWORD, kdf=WEAK_KDF, config=Config(chunking=chunking))
    dst = Repository.init(open_storage(str(tmp_path / "b")), OTHER_PASSWORD, kdf=WEAK_KDF,
                          config=Config(chunking=src.config.chunking))
    with src, dst:
        first = backup(src, source, "h1")
        result = run_copy(src, dst, CopySelection())
        assert [c.source for c in result.copied] == [first]
        data_blobs = result.blobs_read
        assert data_blobs > 12

        # one file changes: the next copy reads only its new chunks from the source
        path = source / "d0" / "f0.bin"
        path.write_bytes(path.read_bytes()[:100_000] + b"new tail" * 1000)
        second = backup(src, source, "h1")
        result = run_copy(src, dst, CopySelection(snapshot_ids=["latest"]))
        assert [c.source for c in result.copied] == [second]
        assert 0 < result.blobs_read <= 4

        # a direct backup of the same data into the destination (every file re-read and chunked)
        # stores no data blob: at most a few small trees
        direct = run_backup(dst, BackupOptions(paths=[str(source)], hostname="h1", force=True))
        assert direct.summary.bytes_read == direct.summary.bytes_total > 2_000_000
        assert direct.summary.blobs_added <= 5 and direct.summary.bytes_added < 5_000
        report = run_check(dst, read_data=True)
        assert report.errors == [] and report.snapshots == 3


def test_copy_selection(tmp_path) -> None:
    source = make_tree(tmp_path / "data", files=3, size=1000)
    src = Repository.init(open_storage(str(tmp_path / "a")), PASSWORD, kdf=WEAK_KDF)
    dst = Repository.init(open_storage(str(tmp_path / "b")), OTHER_PASSWORD, kdf=WEAK_KDF)
    with src, dst:
        a = backup(src, source, "h1", ["t1"])
        b = backup(src, source, "h2", ["t2"])
        c = backup(src, source, "h2", ["t1", "t3"])
        assert [x.source for x in run_copy(src, dst, CopySelection(tags=["t1"])).copied] == [a, c]
        assert [x.source for x in run_copy(src, dst, CopySelection(snapshot_ids=[b[:10]])).copied] == [b]
        with pytest.raises(SnapshotNotFound):
            run_copy(src, dst, CopySelection(hosts=["nobody"]))
        result = run_copy(src, dst, CopySelection(snapshot_ids=["latest"], hosts=["h1"]))
        assert result.copied == [] and [x.source for x in result.skipped] == [a]
        copies = {s.original: s for s in dst.snapshots()}
        assert set(copies) == {a, b, c}
        assert copies[c].tags == ["t1", "t3"] and copies[c].hostname == "h2"


@pytest.mark.parametrize("direction", ["local-to-s3", "s3-to-local"])
def test_copy_between_local_and_s3(direction, tmp_path, cli_env, s3_server, s3_bucket, s3_env) -> None:
    s3_url = s3_server.url(s3_bucket, "repo")
    local_url = str(tmp_path / "local-repo")
    src_url, dst_url = (local_url, s3_url) if direction == "local-to-s3" else (s3_url, local_url)
    env = dict(cli_env, **s3_env)
    src_env = dict(env, STRONGROOM_REPO=src_url)
    dst_env = dict(env, STRONGROOM_REPO=dst_url, STRONGROOM_PASSWORD=OTHER_PASSWORD.decode(),
                   STRONGROOM_FROM_PASSWORD=PASSWORD.decode())
    source = make_tree(tmp_path / "data", files=8, size=100_000)
    run(src_env, "init", *WEAK_KDF_ARGS)
    run(src_env, "backup", str(source), "--tag", "one")
    (source / "extra.txt").write_text("more\n" * 1000)
    run(src_env, "backup", str(source), "--tag", "two")
    run(dst_env, "init", *WEAK_KDF_ARGS, "--copy-chunker-params-from", src_url)
    out = json.loads(run(dst_env, "copy", "--from-repo", src_url, "--json").stdout)
    assert len(out["copied"]) == 2
    assert "no errors" in run(dst_env, "check", "--read-data").stdout
    latest = restore_digest(dst_env, "latest", tmp_path / "out", source)
    assert latest == tree_digest(source)
    first = [c["copy"] for c in out["copied"]][0]
    shutil.rmtree(tmp_path / "out")
    older = restore_digest(dst_env, first[:16], tmp_path / "out", source)
    assert "extra.txt" not in older and len(older) == len(latest) - 1
    out = json.loads(run(dst_env, "copy", "--from-repo", src_url, "--json").stdout)
    assert out["copied"] == [] and len(out["skipped"]) == 2


def test_original_field_encoding() -> None:
    """Pinned bytes (spec §19.3): `original` appears only in copies; other snapshots are unchanged."""
    from strongroom.errors import IntegrityError
    from strongroom.snapshot import Snapshot, Summary

    plain = Snapshot(time="2026-11-22T10:00:00+00:00", hostname="h", username="u", paths=["/x"],
                     tree="ab" * 32, summary=Summary())
    copy = Snapshot(**{**plain.__dict__, "original": "cd" * 32})
    assert b'"original"' not in plain.encode()
    assert copy.encode() == plain.encode().replace(b',"parent"', b',"original":"' + b"cd" * 32 + b'","parent"')
    assert Snapshot.decode(copy.encode(), "ef" * 32, "x").original == "cd" * 32
    assert Snapshot.decode(plain.encode(), "ef" * 32, "x").original is None
    for bad in (b'"original":"zz"', b'"original":12'):
        with pytest.raises(IntegrityError, match="original"):
            Snapshot.decode(plain.encode().replace(b'"parent"', bad + b',"parent"'), "ef" * 32, "x")


def test_copy_file_with_chunk_lists(tmp_path) -> None:
    """A file of more than 2 x 2048 chunks: its chunk-list blobs are rewritten too."""
    import hashlib

    tiny = ChunkingProfiles(ChunkerParams(64, 256, 1024), ChunkerParams(64, 256, 1024))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    big = data_dir / "big.bin"
    big.write_bytes(hashlib.shake_256(b"chunk lists").digest(1_600_000))
    src = Repository.init(open_storage(str(tmp_path / "a")), PASSWORD, kdf=WEAK_KDF, config=Config(chunking=tiny))
    dst = Repository.init(open_storage(str(tmp_path / "b")), OTHER_PASSWORD, kdf=WEAK_KDF,
                          config=Config(chunking=tiny))
    with src, dst:
        backup(src, data_dir, "h")
        [copied] = run_copy(src, dst, CopySelection()).copied
        snap = dst.load_snapshot(copied.copy)
        node = _find(dst, bytes.fromhex(snap.tree), big)
        assert node.content == [] and len(node.content_lists) >= 3
        chunks = list(dst.file_chunks(node))
        assert len(chunks) > 2 * 2048
        digest = hashlib.sha256()
        for chunk_id in chunks:
            digest.update(dst.load_blob(chunk_id))
        assert digest.digest() == hashlib.sha256(big.read_bytes()).digest()
        assert run_check(dst, read_data=True).errors == []


def _find(repo: Repository, tree: bytes, path: Path):
    for part in path.parts[1:]:
        [node] = [n for n in repo.load_tree(tree) if n.name == part.encode()]
        tree = node.subtree
    return node
