"""A backup into a repository whose disk fills up ends with one clear error and leaves the
repository consistent: check --read-data passes and earlier snapshots restore.

The real test mounts a small tmpfs (needs root and mount permission, else it is skipped); the
injected variant runs everywhere with a storage that raises ENOSPC past a byte quota.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from strongroom.cli import main
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.restore import run_restore
from strongroom.errors import EXIT_ERROR, StorageFull
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.storage.base import Storage

from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def make_source(root: Path, total: int, pieces: int = 4) -> Path:
    root.mkdir(parents=True)
    for i in range(pieces):
        (root / f"part{i}.bin").write_bytes(b"\0" + os.urandom(total // pieces))
    return root


@pytest.fixture
def small_tmpfs(tmp_path):
    mountpoint = tmp_path / f"full-{uuid.uuid4().hex[:8]}"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_backup_onto_a_full_filesystem(small_tmpfs, tmp_path, capsys, monkeypatch):
    repo_dir = small_tmpfs / "repo"
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_dir))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    small = make_source(tmp_path / "small", 200_000)
    big = make_source(tmp_path / "big", 6_000_000, pieces=12)

    def cli(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    assert cli("init", *WEAK_KDF_ARGS)[0] == 0
    assert cli("backup", str(small))[0] == 0
    code, out, err = cli("backup", str(big))
    assert code == EXIT_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strongroom: no space left on device while writing "), err
    assert "Traceback" not in err

    with Repository.open(LocalStorage(repo_dir), PASSWORD) as repo:
        result = run_check(repo, read_data=True)
        assert result.ok, result.errors
        assert all("not in any index" in n for n in result.notes)
        (snap,) = repo.snapshots()
        restored = run_restore(repo, snap, str(tmp_path / "out"))
        assert restored.errors == []
        assert files(tmp_path / "out" / str(small).lstrip("/")) == files(small)
    assert not [p for p in repo_dir.rglob("*") if ".tmp-" in p.name]  # no temporary files left to eat space


class QuotaStorage(Storage):
    """Local storage that raises ENOSPC (StorageFull) once ``quota`` bytes have been stored."""

    def __init__(self, inner: LocalStorage, quota: int) -> None:
        self.inner, self.url, self.quota, self.used = inner, inner.url, quota, 0

    def create(self): self.inner.create()
    def exists(self): return self.inner.exists()
    def load(self, name, offset=0, length=None): return self.inner.load(name, offset, length)
    def delete(self, name): self.inner.delete(name)
    def list(self, prefix): return self.inner.list(prefix)
    def stat(self, name): return self.inner.stat(name)

    def store(self, name, data):
        if self.used + len(data) > self.quota:
            raise StorageFull(f"no space left on device while writing {name} (quota)")
        self.used += len(data)
        self.inner.store(name, data)


@pytest.mark.parametrize("quota", [1_000, 60_000, 150_000, 400_000, 700_000])
def test_backup_with_injected_enospc(repo_path, tmp_path, quota):
    small = make_source(tmp_path / "small", 100_000)
    big = make_source(tmp_path / "big", 1_000_000, pieces=8)
    from strongroom.config import Config
    with Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF, config=Config(pack_size=64 * 1024)) as repo:
        first = run_backup(repo, BackupOptions(paths=[str(small)])).snapshot
    with Repository.open(QuotaStorage(LocalStorage(repo_path), quota), PASSWORD) as repo:
        with pytest.raises(StorageFull, match="no space left"):
            run_backup(repo, BackupOptions(paths=[str(big)]))
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:
        result = run_check(repo, read_data=True)
        assert result.ok, result.errors
        assert [s.id for s in repo.snapshots()] == [first.id]
        assert run_restore(repo, first, str(tmp_path / "out")).errors == []
        assert files(tmp_path / "out" / str(small).lstrip("/")) == files(small)
        # space freed: the next backup completes and reuses the packs stored before the disk filled
        second = run_backup(repo, BackupOptions(paths=[str(big)])).snapshot
        assert second.summary.bytes_added < 1_100_000
        assert run_restore(repo, second, str(tmp_path / "out2")).errors == []
        assert files(tmp_path / "out2" / str(big).lstrip("/")) == files(big)
