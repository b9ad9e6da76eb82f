"""Restore drills: exact counts, independent verification that catches real damage and a lying
restore path, reproducible samples, cleanup in every case, the audit entry, and the CLI."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from strongroom.audit import read_log
from strongroom.cli.commands import cli
from strongroom.commands import drill as drill_module
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.drill import BUCKETS, DEFAULT_FLOOR_BYTES, Sample, run_drill
from strongroom.commands.ls import walk
from strongroom.errors import UsageError
from strongroom.pack import pack_path
from strongroom.restore_target import RestoreTarget
from strongroom.testing.damage import flip_byte
from strongroom.tree import FILE

from conftest import PASSWORD

SIZES = {f"f{i:02d}.bin": 997 * i for i in range(1, 41)} | {"empty": 0}
ALL = Sample.parse(None, everything=True)


def _content(name: str, size: int) -> bytes:
    seed = name.encode() * 64
    return (seed * (size // len(seed) + 1))[:size] if size else b""


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    for name, size in SIZES.items():
        folder = root / "sub" if name.endswith("7.bin") else root
        (folder / name).write_bytes(_content(name, size))
        os.utime(folder / name, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    os.chmod(root / "f03.bin", 0o400)  # restored content must still be read back
    return root


@pytest.fixture
def snap(repo, source):
    return run_backup(repo, BackupOptions(paths=[str(source)])).snapshot


def _path_of(source, name: str) -> str:
    folder = source / "sub" if name.endswith("7.bin") else source
    return str(folder / name)


def _sampled(repo, snap, **kwargs) -> tuple[object, list[str]]:
    names: list[str] = []
    result = run_drill(repo, snap, progress=lambda p: names.append(p.current), **kwargs)
    return result, names


def test_drill_all_restores_and_verifies_every_file(repo, snap, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_drill(repo, snap, sample=ALL, seed=1, tmp_dir=str(scratch))
    assert result.ok
    assert result.failures == []
    assert result.files_total == len(SIZES) == 41
    assert result.bytes_total == sum(SIZES.values()) == 997 * 820
    assert (result.files_sampled, result.bytes_sampled) == (41, 997 * 820)
    assert (result.files_restored, result.bytes_restored, result.files_verified) == (41, 997 * 820, 41)
    assert result.throughput > 0
    expected = result.tree_walk_seconds + result.bytes_total / result.throughput
    assert result.estimated_restore_seconds == pytest.approx(expected)
    assert os.listdir(scratch) == []


def test_default_sample_restores_a_small_snapshot_fully(repo, snap):
    assert Sample().target(10 ** 6) == 10 ** 6  # below the floor: everything
    assert Sample().target(10 * DEFAULT_FLOOR_BYTES) == DEFAULT_FLOOR_BYTES
    assert Sample().target(100 * DEFAULT_FLOOR_BYTES) == 10 * DEFAULT_FLOOR_BYTES
    result = run_drill(repo, snap)
    assert (result.files_verified, result.bytes_restored) == (41, 997 * 820)


def test_sample_is_whole_files_reaching_the_share_and_reproducible(repo, snap, source):
    first, names = _sampled(repo, snap, sample=Sample.parse("25%"), seed=42)
    again, names_again = _sampled(repo, snap, sample=Sample.parse("25%"), seed=42)
    other, names_other = _sampled(repo, snap, sample=Sample.parse("25%"), seed=43)
    assert names == names_again
    assert names != names_other
    for result, chosen in ((first, names), (other, names_other)):
        assert result.ok
        assert result.files_sampled == result.files_verified == len(chosen) < 41
        assert result.bytes_sampled == result.bytes_restored == sum(
            os.path.getsize(n) for n in chosen)  # whole files, exactly those named
        assert result.bytes_sampled >= 0.25 * result.bytes_total
        assert result.bytes_sampled < 0.25 * result.bytes_total + 997 * 40 * 3  # over by a few files at most
        assert set(chosen) <= {_path_of(source, n) for n in SIZES}


def test_sample_bucket_cutoff_keeps_at_least_one_file(repo, source, tmp_path):
    only_empty = tmp_path / "empties"
    only_empty.mkdir()
    for i in range(5):
        (only_empty / f"e{i}").touch()
    snap = run_backup(repo, BackupOptions(paths=[str(only_empty)])).snapshot
    result = run_drill(repo, snap, sample=Sample.parse("10%"), seed=7)
    assert (result.files_total, result.bytes_total) == (5, 0)
    assert result.files_sampled == 5  # a target of all bytes (0) restores every file
    assert result.estimated_restore_seconds == pytest.approx(
        result.tree_walk_seconds + result.restore_seconds * 5 / 5)
    assert result.estimate_method == "tree_walk_seconds + restore_seconds * files_total / files_restored"
    assert BUCKETS == 4096


def test_corrupted_pack_fails_the_drill_naming_the_file(repo, snap, repo_path, source, tmp_path):
    victim = _path_of(source, "f20.bin")
    node = next(e.node for e in walk(repo, bytes.fromhex(snap.tree)) if os.fsdecode(e.path) == victim)
    location = repo.locate(next(repo.file_chunks(node)))
    flip_byte(repo_path / pack_path(location.pack), location.entry.offset + location.entry.length // 2)
    # Small text chunks share a ciphertext in groups (spec §24): every file with a chunk in the
    # damaged one fails, the others restore.
    hit = {(location.pack, location.entry.offset)}
    damaged = sorted(os.fsdecode(e.path) for e in walk(repo, bytes.fromhex(snap.tree)) if e.node.type == FILE
                     and any((loc.pack, loc.entry.offset) in hit for loc in map(repo.locate, repo.file_chunks(e.node))))
    assert victim in damaged
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_drill(repo, snap, sample=ALL, seed=1, tmp_dir=str(scratch))
    assert not result.ok
    assert sorted((f.path, f.stage) for f in result.failures) == [(path, "restore") for path in damaged]
    ok = 41 - len(damaged)
    assert (result.files_sampled, result.files_verified, result.files_restored) == (41, ok, ok)
    assert os.listdir(scratch) == []
    last = read_log(repo).entries[-1].doc
    assert last["command"] == "drill"
    assert last["result"].startswith(f"{len(damaged)} file(s) failed, first {result.failures[0].path}:")


def test_independent_verification_catches_a_restore_path_writing_a_wrong_byte(repo, snap, source, monkeypatch):
    victim = _path_of(source, "f33.bin").encode()
    original = RestoreTarget.write_file

    def lying_write(self, parts, chunks, *, size_hint=None):
        def altered():
            first = True
            for chunk in chunks:
                if first and b"/" + b"/".join(parts) == victim:
                    chunk = bytes([chunk[0] ^ 0x20]) + bytes(chunk[1:])
                first = False
                yield chunk
        return original(self, parts, altered(), size_hint=size_hint)

    monkeypatch.setattr(RestoreTarget, "write_file", lying_write)
    result = run_drill(repo, snap, sample=ALL, seed=3)
    assert [(f.path, f.stage) for f in result.failures] == [(victim.decode(), "verify")]
    assert "differ from the snapshot" in result.failures[0].error
    assert (result.files_restored, result.files_verified) == (41, 40)


def test_metadata_that_is_not_applied_is_a_mismatch(repo, snap, monkeypatch):
    original = RestoreTarget.set_metadata

    def no_mtime(self, parts, **kwargs):
        kwargs["mtime_ns"] = None
        return original(self, parts, **kwargs)

    monkeypatch.setattr(RestoreTarget, "set_metadata", no_mtime)
    result = run_drill(repo, snap, sample=ALL, seed=3)
    assert len(result.failures) == 41
    assert all(f.stage == "verify" and "modification time" in f.error for f in result.failures)


def test_scratch_directory_is_removed_when_the_drill_is_interrupted(repo, snap, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    seen = []

    def interrupt(repo_, path, node):
        seen.append(path)
        assert os.path.exists(path)  # the restored file really is on disk while verified
        raise KeyboardInterrupt

    monkeypatch.setattr(drill_module, "verify_file", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_drill(repo, snap, sample=ALL, seed=1, tmp_dir=str(scratch))
    assert len(seen) == 1 and seen[0].startswith(os.fsencode(scratch))
    assert os.listdir(scratch) == []


@pytest.mark.parametrize("text", ["0%", "101%", "ten", "-5%"])
def test_invalid_sample_is_a_usage_error(text):
    with pytest.raises(UsageError):
        Sample.parse(text)


def test_sample_and_all_are_exclusive():
    with pytest.raises(UsageError):
        Sample.parse("5%", everything=True)


# -- the command line ----------------------------------------------------------------------------

def _cli(args, repo_path, tmp_path):
    env = {"STRONGROOM_REPO": str(repo_path), "STRONGROOM_PASSWORD": PASSWORD.decode(),
           "STRONGROOM_CACHE_DIR": str(tmp_path / "cache")}
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_cli_drill_json_and_exit_code(repo, snap, repo_path, source, tmp_path, monkeypatch):
    ok = _cli(["drill", snap.id[:8], "--all", "--seed", "9", "--json"], repo_path, tmp_path)
    assert ok.exit_code == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["ok"], doc["snapshot"], doc["seed"], doc["sample"]) == (True, snap.id, 9, "all")
    assert (doc["files_total"], doc["files_verified"], doc["bytes_total"]) == (41, 41, 997 * 820)
    assert doc["failures"] == []
    assert doc["estimate_method"] == "tree_walk_seconds + bytes_total / bytes_per_second"

    human = _cli(["drill", "--sample", "30%", "--seed", "9"], repo_path, tmp_path)
    assert human.exit_code == 0
    assert "seed 9" in human.stdout and "estimated full restore time (RTO)" in human.stdout

    victim = _path_of(source, "f11.bin")
    monkeypatch.setattr(drill_module, "verify_file", lambda r, p, n: (_ for _ in ()).throw(
        drill_module.DrillMismatch("verify: bytes 0..10 differ from the snapshot")) if p.endswith(b"/f11.bin")
        else n.size)
    bad = _cli(["drill", "--all", "--json"], repo_path, tmp_path)
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False
    assert doc["failures"] == [{"path": victim, "stage": "verify",
                                "error": "verify: bytes 0..10 differ from the snapshot"}]
    assert bad.stderr.strip().splitlines()[-1] == (
        f"strongroom: drill FAILED: {victim}: verify: bytes 0..10 differ from the snapshot")


def test_cli_drill_usage_errors(repo, snap, repo_path, tmp_path):
    from strongroom.cli import main
    env = {"STRONGROOM_REPO": str(repo_path), "STRONGROOM_PASSWORD": PASSWORD.decode()}
    for args in (["drill", "--sample", "200%"], ["drill", "--all", "--sample", "5%"]):
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            with pytest.raises(SystemExit) as exit_info:
                main(args)
        assert exit_info.value.code == 2


def test_sigterm_during_a_drill_exits_130_and_removes_the_scratch_directory(repo, snap, repo_path, tmp_path,
                                                                            monkeypatch):
    import signal

    from strongroom.cli import main
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    real_verify = drill_module.verify_file
    calls = []

    def terminated_midway(repo_, path, node):
        calls.append(path)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # as `systemctl stop` would
        return real_verify(repo_, path, node)

    monkeypatch.setattr(drill_module, "verify_file", terminated_midway)
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        main(["drill", "--all", "--tmp-dir", str(scratch)])
    assert exit_info.value.code == 130
    assert len(calls) == 5
    assert os.listdir(scratch) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


# -- archives stored member-wise: the drill rebuilds the archive file, as restore does ------------

@pytest.fixture
def zip_snap(repo, tmp_path):
    import zipfile
    root = tmp_path / "zsrc"
    root.mkdir()
    with zipfile.ZipFile(root / "export.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr(f"general/2026-11-0{i + 1}.json", '[{"text": "message %d"}]\n' % i * 200)
        zf.writestr("users.json", '[{"id": "U1", "name": "alice"}]\n')
    (root / "notes.txt").write_bytes(b"not an archive\n" * 10)
    result = run_backup(repo, BackupOptions(paths=[str(root)], expand_archives=True))
    assert [a["stored"] for a in result.archives] == ["members"]
    return result.snapshot, root


def test_an_archive_is_drilled_as_one_rebuilt_file(repo, zip_snap):
    snap, root = zip_snap
    size = os.path.getsize(root / "export.zip")
    result = run_drill(repo, snap, sample=ALL, seed=1)
    assert result.ok and result.failures == []
    # two drilled files: the archive (rebuilt, its members not drilled apart) and notes.txt
    assert (result.files_total, result.bytes_total) == (2, size + 150)
    assert (result.files_restored, result.bytes_restored, result.files_verified) == (2, size + 150, 2)


def test_a_wrong_byte_in_a_rebuilt_archive_is_caught(repo, zip_snap, monkeypatch):
    snap, root = zip_snap
    victim = str(root / "export.zip").encode()
    original = RestoreTarget.write_file

    def lying_write(self, parts, chunks, *, size_hint=None):
        def altered():
            for n, chunk in enumerate(chunks):
                if n == 0 and b"/" + b"/".join(parts) == victim:
                    chunk = bytes(chunk[:40]) + bytes([chunk[40] ^ 0x01]) + bytes(chunk[41:])
                yield chunk
        return original(self, parts, altered(), size_hint=size_hint)

    monkeypatch.setattr(RestoreTarget, "write_file", lying_write)
    result = run_drill(repo, snap, sample=ALL, seed=1)
    assert [(f.path, f.stage) for f in result.failures] == [(victim.decode(), "verify")]
    assert "SHA-256" in result.failures[0].error
    assert (result.files_restored, result.files_verified) == (2, 1)
