"""Shared fixtures: a private cache directory per test, and quick repositories.

Key files in tests use a tiny Argon2id cost (the format stores the parameters, so this exercises
the same code as the default); everything else is exactly what users get."""

from __future__ import annotations

import os
import sys

import pytest

from strongroom.crypto.keyfile import KdfParams
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

WEAK_KDF = KdfParams(memory_kib=64, iterations=1, lanes=1)
PASSWORD = b"correct horse battery staple"
# Command-line equivalent of WEAK_KDF for `strongroom init` in subprocess and runner tests.
WEAK_KDF_ARGS = ["--kdf-memory", "64", "--kdf-iterations", "1"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("STRONGROOM_REPO", "STRONGROOM_PASSWORD", "STRONGROOM_PASSWORD_FILE", "STRONGROOM_PASSWORD_COMMAND"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def repo_path(tmp_path):
    return tmp_path / "repo"


@pytest.fixture
def repo(repo_path):
    r = Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF)
    yield r
    r.close()


@pytest.fixture
def cli_env(repo_path, tmp_path):
    """Environment for running the CLI against ``repo_path`` (not yet initialised)."""
    env = dict(os.environ)
    env.update(STRONGROOM_REPO=str(repo_path), STRONGROOM_PASSWORD=PASSWORD.decode(),
               STRONGROOM_CACHE_DIR=str(tmp_path / "cache"))
    return env


def strongroom_command() -> list[str]:
    return [sys.executable, "-m", "strongroom"]
