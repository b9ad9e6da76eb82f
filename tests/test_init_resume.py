"""An ``init`` interrupted before it stored the config: running ``init`` again completes.

Such a location holds the empty layout and maybe a key file, but no config: ``open`` says "no
repository" there, so ``init`` must not refuse it as "already exists" (the user would be stuck).
It must still refuse a location holding a config or anything an init does not write.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from strongroom.errors import EXIT_ERROR, EXIT_NO_REPOSITORY, EXIT_OK, RepositoryExists, RepositoryNotFound
from strongroom.repository import Repository
from strongroom.storage import LocalStorage, MemoryStorage
from strongroom.storage.faulty import FaultyStorage, SimulatedCrash

from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS, strongroom_command
from test_cli import one_line, run, subprocess_env


def key_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "keys").iterdir())


@pytest.mark.parametrize("after", [False, True], ids=["before-the-key", "after-the-key"])
def test_init_crashed_at_its_key_file_can_be_run_again(tmp_path, after):
    root = tmp_path / "repo"
    with pytest.raises(SimulatedCrash):
        Repository.init(FaultyStorage(LocalStorage(root), op="store", at=1, after=after), PASSWORD, kdf=WEAK_KDF,
                        cache_root=str(tmp_path / "cache"))
    assert len(key_files(root)) == (1 if after else 0) and not (root / "config").exists()
    with pytest.raises(RepositoryNotFound):
        Repository.open(LocalStorage(root), PASSWORD, cache_root=str(tmp_path / "cache"))
    with Repository.init(LocalStorage(root), PASSWORD, kdf=WEAK_KDF, cache_root=str(tmp_path / "cache")) as repo:
        created = repo.config.id
        assert key_files(root) == [repo.key_name.removeprefix("keys/")]  # the orphan key is gone
    with Repository.open(LocalStorage(root), PASSWORD, cache_root=str(tmp_path / "cache")) as repo:
        assert repo.config.id == created


def test_init_crashed_before_its_config_can_be_run_again(tmp_path):
    """The worst moment: the key file stored, the config not. Left in place, the orphan key (same
    password, another master key) would be tried when opening and fail against the new config."""
    root = tmp_path / "repo"
    with pytest.raises(SimulatedCrash):
        Repository.init(FaultyStorage(LocalStorage(root), op="store", at=1, match="config"), PASSWORD,
                        kdf=WEAK_KDF, cache_root=str(tmp_path / "cache"))
    [orphan] = key_files(root)
    with Repository.init(LocalStorage(root), PASSWORD, kdf=WEAK_KDF, cache_root=str(tmp_path / "cache")) as repo:
        assert key_files(root) == [repo.key_name.removeprefix("keys/")] != [orphan]
    with Repository.open(LocalStorage(root), PASSWORD, cache_root=str(tmp_path / "cache")) as repo:
        assert repo.snapshots() == []


def test_init_crashed_after_its_config_is_a_repository(tmp_path):
    root = tmp_path / "repo"
    with pytest.raises(SimulatedCrash):
        Repository.init(FaultyStorage(LocalStorage(root), op="store", at=1, after=True, match="config"), PASSWORD,
                        kdf=WEAK_KDF, cache_root=str(tmp_path / "cache"))
    with pytest.raises(RepositoryExists, match="already exists"):
        Repository.init(LocalStorage(root), PASSWORD, kdf=WEAK_KDF, cache_root=str(tmp_path / "cache"))
    with Repository.open(LocalStorage(root), PASSWORD, cache_root=str(tmp_path / "cache")) as repo:
        assert repo.snapshots() == [] and len(key_files(root)) == 1


def test_init_that_lost_a_race_for_the_location_does_not_carry_on(tmp_path):
    """Two inits at once over one location: the second takes over the first's leftovers (its key
    file) before the first stores its config. The first must notice, not report success."""
    storage = MemoryStorage()

    class Racing(FaultyStorage):
        def store(self, name, data):
            super().store(name, data)
            if name.startswith("keys/"):  # the other init starts over here, right now
                Repository.init(storage, b"other password", kdf=WEAK_KDF, cache_root=str(tmp_path / "c2")).close()

    with pytest.raises(RepositoryExists, match="at the same time"):
        Repository.init(Racing(storage, op="load", at=10**6), PASSWORD, kdf=WEAK_KDF, cache_root=str(tmp_path / "c1"))


def test_killed_init_process_then_init_again(cli_env, repo_path, tmp_path):
    """A real ``kill -9`` while init derives its key (after the layout, before key and config)."""
    # An expensive key derivation keeps the process between the two for seconds: the kill lands there.
    proc = subprocess.Popen(strongroom_command() + ["init", "--kdf-memory", "65536", "--kdf-iterations", "100"],
                            env=subprocess_env(cli_env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (repo_path / "data" / "ff").is_dir():
            assert proc.poll() is None, f"init exited ({proc.returncode}) before it made the layout"
            assert time.monotonic() < deadline, "init made no layout within 60 s"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (repo_path / "config").exists(), "init finished before it was killed"

    nothing = run(["snapshots"], cli_env)
    assert (nothing.returncode, one_line(nothing.stderr)) == (
        EXIT_NO_REPOSITORY, f"strongroom: no repository at {repo_path} (run `strongroom init` to create one)")
    # As if it had been killed a moment later: a key file of another master key, same password.
    other = tmp_path / "other"
    assert run(["init", *WEAK_KDF_ARGS], dict(cli_env, STRONGROOM_REPO=str(other))).returncode == EXIT_OK
    [orphan] = key_files(other)
    shutil.copy(other / "keys" / orphan, repo_path / "keys" / orphan)

    again = run(["init", *WEAK_KDF_ARGS], cli_env)
    assert again.returncode == EXIT_OK, again.stderr
    assert again.stdout.startswith("created repository ") and again.stderr == ""
    assert len(key_files(repo_path)) == 1 and key_files(repo_path) != [orphan]
    listed = run(["snapshots", "--json"], cli_env)
    assert (listed.returncode, listed.stdout.strip(), listed.stderr) == (EXIT_OK, "[]", "")
    twice = run(["init", *WEAK_KDF_ARGS], cli_env)
    assert (twice.returncode, one_line(twice.stderr)) == (
        EXIT_ERROR, f"strongroom: a repository already exists at {repo_path}")


def test_init_refuses_a_folder_with_files_of_its_own(cli_env, repo_path):
    (repo_path / "keys").mkdir(parents=True)
    (repo_path / "keys" / "notes.txt").write_text("mine")
    proc = run(["init", *WEAK_KDF_ARGS], cli_env)
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_ERROR, f"strongroom: cannot create repository: {repo_path} is not empty (it holds 'keys/notes.txt' "
                    "and no config)")
    assert sorted(os.listdir(repo_path)) == ["keys"] and (repo_path / "keys" / "notes.txt").read_text() == "mine"
