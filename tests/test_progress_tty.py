"""Progress bars: shown on a terminal for every long-running command, never on a pipe, never
with --json. Each command runs in a real subprocess; for the terminal case its standard error is
the slave side of a pseudo-terminal (the stdlib pty module), exactly what an admin sees."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

import strongroom

from conftest import PASSWORD, WEAK_KDF_ARGS, strongroom_command

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(strongroom.__file__)))

# (description on the bar, arguments); all run against the repository built by `repos`.
LONG_RUNNING = [
    ("backup", ["backup", "{data}"]),
    ("restore", ["restore", "latest", "--target", "{out}"]),
    ("check", ["check", "--read-data"]),
    ("drill", ["drill", "--all"]),
    ("copy", ["copy", "--from-repo", "{repo}"]),  # into the second repository
    ("prune", ["prune"]),
    ("prune", ["forget", "--keep-last", "1", "--prune"]),
    ("stats", ["stats"]),
]
TQDM_MARKS = (b"\r", b"B/s", b"it/s", b"\x1b[")


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """Two repositories (the second for copy) shared by the module: every command here can run
    again on what the others left."""
    tmp_path = tmp_path_factory.mktemp("progress")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(20):
        (data / f"room{i}.json").write_bytes(os.urandom(3000 + i))
    env = dict(os.environ)
    env.update(STRONGROOM_REPO=str(tmp_path / "repo"), STRONGROOM_PASSWORD=PASSWORD.decode(),
               STRONGROOM_FROM_PASSWORD=PASSWORD.decode(), STRONGROOM_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p))
    env.pop("STRONGROOM_DEBUG", None)
    for repo in ("repo", "copy"):
        subprocess.run(strongroom_command() + ["init", *WEAK_KDF_ARGS], env={**env, "STRONGROOM_REPO": str(tmp_path / repo)},
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
    subprocess.run(strongroom_command() + ["backup", str(data)], env=env, check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)
    return tmp_path, env


def _args(args: list[str], root: Path) -> list[str]:
    out = root / f"out-{os.urandom(4).hex()}"  # restore into a new directory each time
    return [a.format(data=root / "data", out=out, repo=root / "repo") for a in args]


def _env_for(args: list[str], root: Path, env: dict) -> dict:
    return {**env, "STRONGROOM_REPO": str(root / "copy")} if args[0] == "copy" else env


def _run_on_terminal(argv: list[str], env: dict, columns: int = 100) -> tuple[int, bytes, bytes]:
    """Run with standard error on a pseudo-terminal of ``columns`` columns (0: a terminal that
    reports no size); return (exit code, stdout, terminal output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen: list[bytes] = []

    def drain() -> None:  # keep reading, or a chatty child could block on a full terminal buffer
        while True:
            try:
                block = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not block:
                return
            seen.append(block)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, out, b"".join(seen)


@pytest.mark.parametrize("desc,args", LONG_RUNNING, ids=[" ".join(a[:2]) for _, a in LONG_RUNNING])
def test_no_progress_on_a_pipe(repos, desc, args):
    root, env = repos
    proc = subprocess.run(strongroom_command() + _args(args, root), env=_env_for(args, root, env),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not any(mark in proc.stderr for mark in TQDM_MARKS), proc.stderr
    assert proc.stderr == b""  # nothing at all: these runs have no warnings either


@pytest.mark.parametrize("desc,args", LONG_RUNNING, ids=[" ".join(a[:2]) for _, a in LONG_RUNNING])
def test_progress_bar_on_a_terminal(repos, desc, args):
    root, env = repos
    code, out, terminal = _run_on_terminal(strongroom_command() + _args(args, root), _env_for(args, root, env))
    assert code == 0, terminal
    assert f"\r{desc}:".encode() in terminal, terminal  # the bar, labelled, redrawn in place
    assert b"\r" not in out  # the bar never goes to standard output


def test_json_on_a_terminal_shows_no_progress(repos):
    root, env = repos
    code, out, terminal = _run_on_terminal(strongroom_command() + ["drill", "--all", "--json"], env)
    assert code == 0, terminal
    assert terminal == b""
    assert out.startswith(b"{")


def test_progress_bar_on_a_terminal_that_reports_no_size(repos):
    root, env = repos
    code, _, terminal = _run_on_terminal(strongroom_command() + ["drill", "--all"], env, columns=0)
    assert code == 0, terminal
    assert b"\rdrill:" in terminal
