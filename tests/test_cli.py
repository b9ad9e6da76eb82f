"""The command line, end to end: every exit code, the JSON outputs, and the password sources.

Tests run the CLI three ways: click's CliRunner (output of successful commands), ``main(argv)``
in-process (exit codes, where a function must be patched), and real subprocesses (at least one
per exit code: what a user or a cron job actually sees). No stderr may contain a traceback."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import strongroom
from strongroom.cli import main
from strongroom.cli.commands import cli
from strongroom.errors import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_NO_REPOSITORY, EXIT_OK, EXIT_PARTIAL,
                               EXIT_USAGE, EXIT_WRONG_PASSWORD)
from strongroom.locking import Lock
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from conftest import PASSWORD, WEAK_KDF_ARGS, strongroom_command

# The directory holding the strongroom package this test process imported: put first on the
# subprocesses' PYTHONPATH, so they run the same code whether it is installed or a checkout
# (a relative PYTHONPATH=src would break in a subprocess with another working directory).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(strongroom.__file__)))


# -- helpers -------------------------------------------------------------------------------------


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.pop("STRONGROOM_DEBUG", None)
    return env


def run(args: list[str], env: dict[str, str], *, input: bytes | None = None, timeout: float = 120,
        cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``strongroom ARGS`` in a subprocess; stdout and stderr as text."""
    proc = subprocess.run(strongroom_command() + args, env=subprocess_env(env), input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, cwd=cwd)
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in proc.stderr, f"strongroom {args}: traceback on stderr:\n{proc.stderr}"
    return proc


def ok(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    proc = run(args, env, **kwargs)
    assert proc.returncode == EXIT_OK, f"strongroom {args} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Call ``strongroom.cli.main`` in-process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    code = exc.value.code
    code = 0 if code is None else code
    assert isinstance(code, int), f"exit code {code!r} is not an int"
    assert "Traceback" not in err, err
    return code, out, err


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{stderr}"
    return lines[0]


def make_source(root: Path) -> Path:
    """A small tree: text and binary files, a subfolder, an empty file and a symlink."""
    rnd = random.Random(1234)
    src = root / "source"
    (src / "chats" / "2024").mkdir(parents=True)
    (src / "notes").mkdir()
    (src / "chats" / "2024" / "general.json").write_text(
        json.dumps([{"id": i, "author": f"user{i % 7}", "text": f"message number {i} " * 3} for i in range(2000)]))
    (src / "chats" / "2024" / "random.json").write_text(json.dumps({"messages": ["hello", "world"] * 500}))
    (src / "notes" / "todo.md").write_text("# TODO\n\n- back up everything\n- restore it\n")
    (src / "notes" / "empty.txt").write_bytes(b"")
    (src / "photo.bin").write_bytes(rnd.randbytes(300_000))
    (src / "link-to-todo").symlink_to("notes/todo.md")
    return src


def tree_digest(root: Path) -> dict[str, object]:
    """Relative path -> sha256 of a file, ("link", target) of a symlink, "dir" of a folder."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def restored_root(target: Path, source: Path) -> Path:
    """Where a backed-up ``source`` lands below a restore target (target/<absolute path>)."""
    return target / str(source.resolve()).lstrip("/")


def repo_files(repo_path: Path, folder: str) -> list[Path]:
    return sorted(p for p in (repo_path / folder).rglob("*") if p.is_file() and ".tmp-" not in p.name)


def data_pack_paths(repo_path: Path, env: dict[str, str]) -> list[Path]:
    """Stored packs that hold only data blobs (not trees), read from every index file."""
    packs = []
    for index_file in repo_files(repo_path, "index"):
        doc = json.loads(ok(["cat", "index", index_file.name], env).stdout)
        for pack in doc["packs"]:
            if pack["blobs"] and all(b["type"] == "data" for b in pack["blobs"]):
                packs.append(repo_path / "data" / pack["name"][:2] / pack["name"])
    return packs


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{err.decode(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path) -> Path:
    return make_source(tmp_path)


@pytest.fixture
def initialised(cli_env, repo_path):
    """An initialised repository (via the CLI) and the environment to reach it."""
    ok(["init", *WEAK_KDF_ARGS], cli_env)
    return cli_env


@pytest.fixture
def backed_up(initialised, source):
    """An initialised repository with one snapshot of ``source``; returns (env, snapshot JSON)."""
    proc = ok(["backup", "--json", "--tag", "first", str(source)], initialised)
    return initialised, json.loads(proc.stdout)["snapshot"]


@pytest.fixture
def inproc(repo_path, monkeypatch):
    """Environment for in-process runs (CliRunner and main()) against ``repo_path``."""
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    return repo_path


# -- exit 0: every command, text and JSON ----------------------------------------------------------


def test_version_and_help(cli_env):
    assert "strongroom" in ok(["--version"], cli_env).stdout
    help_text = ok(["--help"], cli_env).stdout
    for command in ("init", "backup", "restore", "snapshots", "ls", "check", "cat", "unlock"):
        assert command in help_text
    assert "--target" in ok(["restore", "--help"], cli_env).stdout


def _subtree_of(repo: Repository, snapshot_id: str, path: Path) -> bytes:
    tree = bytes.fromhex(repo.load_snapshot(snapshot_id).tree)
    for part in path.resolve().parts[1:]:
        (node,) = [n for n in repo.load_tree(tree) if n.name == os.fsencode(part)]
        tree = node.subtree
    return tree


def test_full_cycle_subprocess(cli_env, repo_path, source, tmp_path):
    init = ok(["init", *WEAK_KDF_ARGS, "--json"], cli_env)
    init_doc = json.loads(init.stdout)
    assert init_doc["repository"] == str(repo_path)
    assert len(init_doc["id"]) == 64
    assert (repo_path / "config").is_file()

    # backup --json: the snapshot and the summary
    doc = json.loads(ok(["backup", "--json", "--tag", "nightly", "--tag", "a", str(source)], cli_env).stdout)
    assert {"snapshot", "summary"} <= doc.keys()
    assert doc["dry_run"] is False and doc["warnings"] == []
    summary = doc["summary"]
    assert summary["files_new"] == 5 and summary["files_changed"] == 0 and summary["files_unchanged"] == 0
    assert summary["errors"] == 0
    assert summary["bytes_total"] == sum(p.stat().st_size for p in source.rglob("*")
                                         if p.is_file() and not p.is_symlink())
    assert summary["bytes_added"] > 0 and summary["blobs_added"] > 0
    snap = doc["snapshot"]
    assert snap["short_id"] == snap["id"][:8]
    assert snap["paths"] == [str(source.resolve())]
    assert snap["tags"] == ["a", "nightly"]

    # a second backup of the unchanged tree adds nothing
    doc2 = json.loads(ok(["backup", "--json", str(source)], cli_env).stdout)
    assert doc2["summary"]["files_unchanged"] == 5 and doc2["summary"]["files_new"] == 0
    assert doc2["summary"]["bytes_read"] == 0
    assert doc2["snapshot"]["parent"] == snap["id"]
    # The source's own tree is the same blob. (The root tree can differ: it records the metadata
    # of the source's ancestors, and /tmp/pytest-of-* changes whenever another pytest runs.)
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:
        assert _subtree_of(repo, doc2["snapshot"]["id"], source) == _subtree_of(repo, snap["id"], source)

    # snapshots --json: an array of objects with the documented keys, oldest first
    snaps = json.loads(ok(["snapshots", "--json"], cli_env).stdout)
    assert isinstance(snaps, list) and len(snaps) == 2
    for s in snaps:
        assert {"id", "short_id", "time", "hostname", "paths", "tags", "tree"} <= s.keys()
        assert len(s["id"]) == 64 and s["short_id"] == s["id"][:8]
        datetime.fromisoformat(s["time"])
        assert isinstance(s["hostname"], str) and s["hostname"]
        assert s["paths"] == [str(source.resolve())]
        assert isinstance(s["tags"], list)
        assert len(s["tree"]) == 64
    assert [s["id"] for s in snaps] == [snap["id"], doc2["snapshot"]["id"]]
    assert snaps[0]["tags"] == ["a", "nightly"]

    # filters
    assert [s["id"] for s in json.loads(ok(["snapshots", "--json", "--tag", "nightly"], cli_env).stdout)] \
        == [snap["id"]]
    assert json.loads(ok(["snapshots", "--json", "--host", "no-such-host"], cli_env).stdout) == []
    text = ok(["snapshots"], cli_env).stdout
    assert snap["short_id"] in text and "2 snapshot(s)" in text

    # ls, plain and --json
    base = str(source.resolve())
    names = ok(["ls", snap["short_id"]], cli_env).stdout.splitlines()
    assert f"{base}/notes/todo.md" in names and f"{base}/chats/2024/general.json" in names
    entries = json.loads(ok(["ls", "--json", snap["id"]], cli_env).stdout)
    by_path = {e["path"]: e for e in entries}
    assert by_path[f"{base}/photo.bin"]["type"] == "file"
    assert by_path[f"{base}/photo.bin"]["size"] == 300_000
    assert by_path[f"{base}/chats"]["type"] == "dir"
    assert by_path[f"{base}/link-to-todo"]["type"] == "symlink"
    assert by_path[f"{base}/link-to-todo"]["target"] == "notes/todo.md"
    sub = json.loads(ok(["ls", "--json", "latest", f"{base}/notes"], cli_env).stdout)
    assert sorted(e["path"] for e in sub) == [f"{base}/notes", f"{base}/notes/empty.txt", f"{base}/notes/todo.md"]
    long_listing = ok(["ls", "-l", "latest", f"{base}/link-to-todo"], cli_env).stdout
    assert long_listing.startswith("l") and "-> notes/todo.md" in long_listing

    # restore, plain and --json; the restored tree equals the source
    target = tmp_path / "restored"
    out = ok(["restore", snap["short_id"], "--target", str(target)], cli_env).stdout
    assert f"restored snapshot {snap['short_id']}" in out
    assert tree_digest(restored_root(target, source)) == tree_digest(source)
    target2 = tmp_path / "restored-json"
    rdoc = json.loads(ok(["restore", "latest", "--json", "--target", str(target2),
                          "--include", "notes"], cli_env).stdout)
    assert rdoc["snapshot"] == doc2["snapshot"]["id"] and rdoc["errors"] == []
    assert rdoc["files"] == 2
    assert sorted(tree_digest(restored_root(target2, source))) == ["notes", "notes/empty.txt", "notes/todo.md"]

    # check, plain and --json
    assert "no errors" in ok(["check"], cli_env).stdout
    cdoc = json.loads(ok(["check", "--json"], cli_env).stdout)
    assert cdoc["ok"] is True and cdoc["errors"] == [] and cdoc["snapshots"] == 2 and cdoc["packs"] >= 2

    # cat config
    config = json.loads(ok(["cat", "config"], cli_env).stdout)
    assert config["version"] == 1 and config["id"] == init_doc["id"]
    assert config["compression"]["algorithm"] == "zstd"
    cat_snap = json.loads(ok(["cat", "snapshot", snap["short_id"]], cli_env).stdout)
    assert cat_snap["id"] == snap["id"] and cat_snap["tree"] == snap["tree"]

    # unlock with nothing to unlock; no lock left behind by any command above
    assert ok(["unlock"], cli_env).stdout.startswith("removed 0 lock(s)")
    assert repo_files(repo_path, "locks") == []


def test_cli_runner_commands(inproc, source, tmp_path):
    """The same commands through click's CliRunner (in-process)."""
    runner = CliRunner()

    def invoke(args):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result

    assert "created repository" in invoke(["init", *WEAK_KDF_ARGS]).stdout
    bdoc = json.loads(invoke(["backup", "--json", str(source)]).stdout)
    snap = bdoc["snapshot"]
    assert bdoc["summary"]["files_new"] == 5
    snaps = json.loads(invoke(["snapshots", "--json"]).stdout)
    assert [s["id"] for s in snaps] == [snap["id"]]
    entries = json.loads(invoke(["ls", "--json", "latest"]).stdout)
    assert f"{source.resolve()}/notes/todo.md" in {e["path"] for e in entries}
    target = tmp_path / "t"
    invoke(["restore", "latest", "-t", str(target)])
    assert tree_digest(restored_root(target, source)) == tree_digest(source)
    assert json.loads(invoke(["check", "--json"]).stdout)["ok"] is True
    assert json.loads(invoke(["cat", "config"]).stdout)["version"] == 1
    assert "removed 0 lock(s)" in invoke(["unlock"]).stdout
    # a text-mode backup prints a summary and the new snapshot's id
    out = invoke(["backup", str(source)]).stdout
    assert "5 unchanged" in out and "saved" in out
    # dry run writes no snapshot
    invoke(["backup", "--dry-run", str(source)])
    assert len(json.loads(invoke(["snapshots", "--json"]).stdout)) == 2


def test_stdin_from_pipe(initialised, tmp_path):
    data = b"".join(b"INSERT INTO t VALUES (%d, 'row %d');\n" % (i, i) for i in range(50_000))
    doc = json.loads(ok(["backup", "--json", "--stdin", "--stdin-filename", "dump.sql"], initialised,
                        input=data).stdout)
    assert doc["snapshot"]["paths"] == ["/dump.sql"]
    assert doc["summary"]["bytes_total"] == len(data)
    entries = json.loads(ok(["ls", "--json", "latest"], initialised).stdout)
    assert [(e["path"], e["size"]) for e in entries] == [("/dump.sql", len(data))]
    target = tmp_path / "t"
    ok(["restore", "latest", "--target", str(target)], initialised)
    assert (target / "dump.sql").read_bytes() == data


def test_stdin_from_command(initialised, tmp_path):
    doc = json.loads(ok(["backup", "--json", "--stdin-from-command", "--stdin-filename", "out.txt", "--",
                         "sh", "-c", "printf 'hello from a command\\n'"], initialised).stdout)
    assert doc["snapshot"]["paths"] == ["/out.txt"]
    target = tmp_path / "t"
    ok(["restore", "latest", "--target", str(target)], initialised)
    assert (target / "out.txt").read_bytes() == b"hello from a command\n"


def test_stdin_from_failing_command_writes_no_snapshot(initialised, repo_path):
    before = repo_files(repo_path, "snapshots")
    proc = run(["backup", "--stdin-from-command", "--", "sh", "-c", "echo partial output; exit 4"], initialised)
    assert proc.returncode != 0
    assert proc.returncode == EXIT_ERROR
    assert "4" in one_line(proc.stderr)
    assert repo_files(repo_path, "snapshots") == before
    assert json.loads(ok(["snapshots", "--json"], initialised).stdout) == []
    assert json.loads(ok(["check", "--json"], initialised).stdout)["ok"] is True
    assert repo_files(repo_path, "locks") == []


def test_exclude_file(initialised, source, tmp_path):
    (source / "cache").mkdir()
    (source / "cache" / "big.dat").write_bytes(b"x" * 1000)
    (source / "notes" / "scratch.tmp").write_text("temporary")
    exclude_file = tmp_path / "excludes.txt"
    exclude_file.write_text("# things not worth keeping\n\n*.tmp\ncache\n  chats/2024/random.json  \n")
    doc = json.loads(ok(["backup", "--json", "--exclude-file", str(exclude_file), "--exclude", "empty.txt",
                         str(source)], initialised).stdout)
    paths = {e["path"] for e in json.loads(ok(["ls", "--json", doc["snapshot"]["id"]], initialised).stdout)}
    base = str(source.resolve())
    rel = sorted(p[len(base) + 1:] for p in paths if p.startswith(base + "/"))
    assert rel == ["chats", "chats/2024", "chats/2024/general.json", "link-to-todo", "notes", "notes/todo.md",
                   "photo.bin"]


# -- exit 1: generic errors ------------------------------------------------------------------------


def test_restore_with_deleted_pack_names_the_file(backed_up, repo_path, source, tmp_path):
    env, snap = backed_up
    packs = data_pack_paths(repo_path, env)
    assert len(packs) == 1, packs  # the small source fits one data pack
    packs[0].unlink()
    target = tmp_path / "t"
    proc = run(["restore", snap["id"], "--target", str(target)], env)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    for name in ("general.json", "photo.bin", "todo.md"):
        assert name in proc.stderr, proc.stderr
    assert "could not be restored" in proc.stderr
    # files without content blobs are still restored; the damaged ones are not left half-written
    root = restored_root(target, source)
    assert (root / "notes" / "empty.txt").read_bytes() == b""
    assert os.readlink(root / "link-to-todo") == "notes/todo.md"
    assert not (root / "photo.bin").exists()

    # --json: still exit 1, the errors listed in the document
    rdoc_proc = run(["restore", snap["id"], "--json", "--target", str(tmp_path / "t2")], env)
    assert rdoc_proc.returncode == EXIT_ERROR
    rdoc = json.loads(rdoc_proc.stdout)
    assert any("photo.bin" in e for e in rdoc["errors"])


def test_check_with_deleted_pack(backed_up, repo_path):
    env, _ = backed_up
    pack = data_pack_paths(repo_path, env)[0]
    pack.unlink()
    proc = run(["check"], env)
    assert proc.returncode == EXIT_ERROR
    assert pack.name in proc.stderr and "missing" in proc.stderr
    jproc = run(["check", "--json"], env)
    assert jproc.returncode == EXIT_ERROR
    doc = json.loads(jproc.stdout)
    assert doc["ok"] is False and any(pack.name in e for e in doc["errors"])


def test_check_with_truncated_pack(backed_up, repo_path):
    env, _ = backed_up
    pack = data_pack_paths(repo_path, env)[0]
    with open(pack, "r+b") as f:
        f.truncate(pack.stat().st_size - 1)
    proc = run(["check"], env)
    assert proc.returncode == EXIT_ERROR
    assert "size" in proc.stderr and pack.name in proc.stderr


def test_init_twice_is_an_error(initialised, repo_path):
    proc = run(["init", *WEAK_KDF_ARGS], initialised)
    assert proc.returncode == EXIT_ERROR
    assert "already" in one_line(proc.stderr)


def test_backup_of_missing_path(initialised, tmp_path):
    proc = run(["backup", str(tmp_path / "does-not-exist")], initialised)
    assert proc.returncode == EXIT_ERROR
    assert "does-not-exist" in one_line(proc.stderr)


def test_failing_password_command(initialised):
    env = dict(initialised)
    del env["STRONGROOM_PASSWORD"]
    proc = run(["snapshots", "--password-command", "sh -c 'exit 3'"], env)
    assert proc.returncode == EXIT_ERROR
    assert "password command failed" in one_line(proc.stderr)


def test_unknown_snapshot_in_process(inproc, capsys, source):
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    code, _, err = run_main(["restore", "abcdef12", "--target", "/nonexistent-target"], capsys)
    assert code == EXIT_ERROR
    assert "abcdef12" in one_line(err)


# -- exit 2: usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["snapshots", "--no-such-option"], "no-such-option"),
    (["restore", "latest"], "--target"),
    (["frobnicate"], "frobnicate"),
    (["cat", "nonsense"], "nonsense"),
    (["init", "--compression-level", "99"], "compression-level"),
])
def test_click_usage_errors(cli_env, args, needle):
    proc = run(args, cli_env)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert needle in proc.stderr
    assert proc.stdout == ""


def test_no_repository_given(cli_env):
    env = dict(cli_env)
    del env["STRONGROOM_REPO"]
    proc = run(["snapshots"], env)
    assert proc.returncode == EXIT_USAGE
    assert "no repository given" in one_line(proc.stderr)


def test_bad_snapshot_id(backed_up, tmp_path):
    env, _ = backed_up
    for args in (["restore", "zzz", "--target", str(tmp_path / "t")], ["ls", "zzz"], ["cat", "snapshot", "zzz"]):
        proc = run(args, env)
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        assert "zzz" in one_line(proc.stderr)
    assert not (tmp_path / "t").exists()


def test_stdin_with_paths(initialised, source, repo_path):
    proc = run(["backup", "--stdin", str(source)], initialised, input=b"data")
    assert proc.returncode == EXIT_USAGE
    assert "--stdin" in one_line(proc.stderr)
    assert repo_files(repo_path, "snapshots") == []


@pytest.mark.parametrize("argv", [
    ["backup"],
    ["backup", "--stdin", "--stdin-from-command", "--", "true"],
    ["backup", "--stdin-from-command"],
    ["backup", "--exclude-file", "/nonexistent/excludes.txt", "/tmp"],
    ["backup", "--stdin", "--stdin-filename", "a/b"],
    ["snapshots", "--password-file", "/nonexistent/password"],
])
def test_usage_errors_in_process(inproc, capsys, argv, monkeypatch):
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    if "--password-file" in argv:
        monkeypatch.delenv("STRONGROOM_PASSWORD")
    code, out, err = run_main(argv, capsys)
    assert code == EXIT_USAGE, err
    one_line(err)
    assert not list((inproc / "snapshots").iterdir())


def test_ambiguous_snapshot_prefix_is_usage_error(inproc, capsys, source):
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    for i in range(20):
        assert run_main(["backup", "--tag", str(i), str(source)], capsys)[0] == EXIT_OK
    ids = [p.name for p in (inproc / "snapshots").iterdir()]
    # 20 ids over 16 first hex digits: at least two share their first digit
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) >= 2)
    code, _, err = run_main(["ls", first], capsys)
    assert code == EXIT_USAGE
    assert "ambiguous" in one_line(err)


# -- exit 3: partial backups ----------------------------------------------------------------------


def test_partial_backup_in_process(inproc, capsys, source, monkeypatch, tmp_path):
    import strongroom.commands.backup as backup_module

    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    real_open = backup_module.open_for_reading

    def fake_open(path: bytes) -> int:
        if os.path.basename(path) == b"photo.bin":
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path)

    monkeypatch.setattr(backup_module, "open_for_reading", fake_open)
    code, out, err = run_main(["backup", "--json", str(source)], capsys)
    assert code == EXIT_PARTIAL, err
    assert "photo.bin" in one_line(err) and "Permission denied" in err
    doc = json.loads(out)
    assert doc["summary"]["errors"] == 1
    assert len(doc["warnings"]) == 1 and "photo.bin" in doc["warnings"][0]
    # the snapshot was written, without the unreadable file
    code, out, _ = run_main(["ls", "--json", doc["snapshot"]["id"]], capsys)
    assert code == EXIT_OK
    paths = {e["path"] for e in json.loads(out)}
    base = str(source.resolve())
    assert f"{base}/notes/todo.md" in paths and f"{base}/photo.bin" not in paths

    # text mode: also exit 3; the next backup (file readable again) picks the file up
    code, out, err = run_main(["backup", str(source)], capsys)
    assert code == EXIT_PARTIAL and "saved" in out
    monkeypatch.setattr(backup_module, "open_for_reading", real_open)
    code, out, err = run_main(["backup", "--json", str(source)], capsys)
    assert code == EXIT_OK, err
    assert json.loads(out)["summary"]["files_new"] == 1


PATCHED_BACKUP = textwrap.dedent("""
    import errno, os, sys
    import strongroom.commands.backup as backup_module
    real_open = backup_module.open_for_reading
    def fake_open(path):
        if os.path.basename(path) == b"photo.bin":
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path)
    backup_module.open_for_reading = fake_open
    from strongroom.cli import main
    main(sys.argv[1:])
""")


def test_partial_backup_subprocess(initialised, source):
    """A real process whose reads of one file fail (works as root, unlike chmod 000)."""
    proc = subprocess.run([sys.executable, "-c", PATCHED_BACKUP, "backup", "--json", str(source)],
                          env=subprocess_env(initialised), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "photo.bin" in one_line(proc.stderr)
    doc = json.loads(proc.stdout)
    assert doc["summary"]["errors"] == 1 and doc["snapshot"]["id"]
    assert json.loads(ok(["check", "--json"], initialised).stdout)["ok"] is True


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files with mode 000")
def test_partial_backup_unreadable_file(initialised, source):
    secret = source / "notes" / "secret.txt"
    secret.write_text("nobody may read this")
    secret.chmod(0)
    try:
        proc = run(["backup", "--json", str(source)], initialised)
    finally:
        secret.chmod(0o600)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert "secret.txt" in one_line(proc.stderr)
    paths = {e["path"] for e in json.loads(ok(["ls", "--json", "latest"], initialised).stdout)}
    assert str(source.resolve() / "notes" / "todo.md") in paths
    assert str(source.resolve() / "notes" / "secret.txt") not in paths


# -- exit 10: no repository ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["snapshots"], ["backup", "."], ["restore", "latest", "-t", "x"], ["check"],
                                  ["ls", "latest"], ["cat", "config"], ["unlock"]])
def test_missing_repository(cli_env, tmp_path, args):
    missing = tmp_path / "no" / "such" / "repo"
    proc = run([*args, "-r", str(missing)], cli_env, cwd=tmp_path)
    assert proc.returncode == EXIT_NO_REPOSITORY, proc.stderr
    assert str(missing) in one_line(proc.stderr)
    assert not missing.exists() and not (tmp_path / "no").exists()
    assert not (tmp_path / "x").exists()


def test_empty_directory_is_not_a_repository(cli_env, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(["snapshots", "-r", str(empty)], cli_env)
    assert proc.returncode == EXIT_NO_REPOSITORY
    one_line(proc.stderr)
    monkeypatch.setenv("STRONGROOM_PASSWORD", "x")
    code, _, err = run_main(["check", "-r", str(empty)], capsys)
    assert code == EXIT_NO_REPOSITORY
    assert list(empty.iterdir()) == []


# -- exit 11: locked -------------------------------------------------------------------------------


def _open_repo(repo_path: Path) -> Repository:
    return Repository.open(LocalStorage(repo_path), PASSWORD)


def test_locked_repository(initialised, repo_path, source, tmp_path):
    with _open_repo(repo_path) as repo:
        lock = repo.lock(exclusive=True)
        try:
            proc = run(["backup", str(source)], initialised)
            assert proc.returncode == EXIT_LOCKED, proc.stderr
            line = one_line(proc.stderr)
            assert "lock" in line and f"pid {os.getpid()}" in line and "unlock" in line
            proc = run(["check"], initialised)
            assert proc.returncode == EXIT_LOCKED
            proc = run(["restore", "latest", "-t", str(tmp_path / "t")], initialised)
            # no snapshot yet: either "locked" or "no snapshot", never a crash
            assert proc.returncode in (EXIT_LOCKED, EXIT_ERROR)
            # unlock leaves a live lock alone
            assert "removed 0 lock(s)" in ok(["unlock"], initialised).stdout
            assert len(repo_files(repo_path, "locks")) == 1
        finally:
            lock.release()
    assert repo_files(repo_path, "snapshots") == []
    ok(["backup", str(source)], initialised)
    assert repo_files(repo_path, "locks") == []


def test_shared_locks_do_not_conflict(initialised, repo_path, source):
    with _open_repo(repo_path) as repo:
        lock = repo.lock(exclusive=False)
        try:
            ok(["backup", str(source)], initialised)
            ok(["check"], initialised)
        finally:
            lock.release()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_unlock_removes_stale_lock(initialised, repo_path, source, monkeypatch):
    dead = _dead_pid()
    with _open_repo(repo_path) as repo:
        with monkeypatch.context() as m:
            m.setattr(os, "getpid", lambda: dead)
            Lock(repo, exclusive=True)._write("locks/" + "ab" * 32)  # a lock file of a process that is gone
    [lock_file] = repo_files(repo_path, "locks")
    # a stale exclusive lock does not block a backup
    ok(["backup", str(source)], initialised)
    assert repo_files(repo_path, "locks") == [lock_file]
    out = ok(["unlock"], initialised).stdout
    assert out.startswith("removed 1 lock(s)")
    assert f"exclusive lock by pid {dead}" in out
    assert repo_files(repo_path, "locks") == []


def test_unlock_remove_all(initialised, repo_path):
    with _open_repo(repo_path) as repo:
        lock = repo.lock(exclusive=True)
        try:
            assert "removed 1 lock(s)" in ok(["unlock", "--remove-all"], initialised).stdout
            assert repo_files(repo_path, "locks") == []
        finally:
            lock.release()  # its file is gone already: must not raise


def test_locked_in_process(inproc, capsys, source, tmp_path):
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    # the holder uses its own index cache: see test_open_twice_in_one_process
    holder = Repository.open(LocalStorage(inproc), PASSWORD, cache_root=str(tmp_path / "holder-cache"))
    with holder, holder.lock(exclusive=True):
        code, _, err = run_main(["backup", str(source)], capsys)
    assert code == EXIT_LOCKED
    assert "locked" in one_line(err)


def test_open_twice_in_one_process(inproc, capsys, source):
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    with _open_repo(inproc) as first:
        assert first.snapshot_ids() == []
        code, _, err = run_main(["backup", str(source)], capsys)
    assert code == EXIT_OK, err


# -- exit 12: wrong password -----------------------------------------------------------------------


def test_wrong_password_env(initialised):
    env = dict(initialised, STRONGROOM_PASSWORD="not the password")
    for args in (["snapshots"], ["check"], ["unlock"]):
        proc = run(args, env)
        assert proc.returncode == EXIT_WRONG_PASSWORD, proc.stderr
        assert "wrong password" in one_line(proc.stderr)


def test_password_file(initialised, tmp_path):
    env = dict(initialised)
    del env["STRONGROOM_PASSWORD"]
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(PASSWORD + b"\nsecond line is ignored\n")
    bad.write_bytes(b"wrong\n")
    ok(["snapshots", "--password-file", str(good)], env)
    ok(["snapshots"], dict(env, STRONGROOM_PASSWORD_FILE=str(good)))
    proc = run(["snapshots", "--password-file", str(bad)], env)
    assert proc.returncode == EXIT_WRONG_PASSWORD
    assert "wrong password" in one_line(proc.stderr)
    # the file takes precedence over $STRONGROOM_PASSWORD
    proc = run(["snapshots", "--password-file", str(bad)], initialised)
    assert proc.returncode == EXIT_WRONG_PASSWORD


def test_password_command(initialised, tmp_path):
    env = dict(initialised)
    del env["STRONGROOM_PASSWORD"]
    ok(["snapshots", "--password-command", f"printf '%s\\n' '{PASSWORD.decode()}'"], env)
    ok(["snapshots"], dict(env, STRONGROOM_PASSWORD_COMMAND=f"echo '{PASSWORD.decode()}'"))
    proc = run(["snapshots", "--password-command", "echo wrong"], env)
    assert proc.returncode == EXIT_WRONG_PASSWORD
    assert "wrong password" in one_line(proc.stderr)


def test_empty_password_from_file_or_command(initialised, tmp_path):
    env = dict(initialised)
    del env["STRONGROOM_PASSWORD"]
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    for args in (["--password-file", str(empty)], ["--password-command", "true"]):
        proc = run(["snapshots", *args], env)
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert "empty password" in one_line(proc.stderr)


def test_empty_password_from_environment(cli_env, repo_path):
    proc = run(["init", *WEAK_KDF_ARGS], dict(cli_env, STRONGROOM_PASSWORD=""))
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    assert not (repo_path / "config").exists()


def test_no_password_without_tty(initialised):
    env = dict(initialised)
    del env["STRONGROOM_PASSWORD"]
    proc = run(["snapshots"], env)  # stdin is /dev/null: no prompt
    assert proc.returncode == EXIT_USAGE
    assert "no password" in one_line(proc.stderr)


def test_wrong_password_in_process(inproc, capsys, monkeypatch):
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    monkeypatch.setenv("STRONGROOM_PASSWORD", "nope")
    code, _, err = run_main(["snapshots"], capsys)
    assert code == EXIT_WRONG_PASSWORD
    one_line(err)


# -- exit 130: interrupted -------------------------------------------------------------------------


def _big_source(root: Path, megabytes: int = 48) -> Path:
    rnd = random.Random(99)
    src = root / "big"
    src.mkdir()
    for i in range(megabytes // 8):
        (src / f"blob{i}.bin").write_bytes(rnd.randbytes(6 << 20))
        (src / f"chat{i}.json").write_text(json.dumps(
            [{"id": j, "text": f"line {j} {rnd.random()}"} for j in range(20_000)]))
    return src


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_backup(initialised, repo_path, tmp_path, sig):
    """Ctrl-C, or SIGTERM from a service manager: the same clean end."""
    src = _big_source(tmp_path)
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    # across exec: run as `pytest &` (as CI scripts do) the backup never saw the Ctrl-C and ran
    # to the end. A terminal's Ctrl-C reaches a process that handles SIGINT: start it so.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(strongroom_command() + ["backup", str(src)], env=subprocess_env(initialised),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        # the backup is under way once it holds its lock (and takes seconds more: 48 MB)
        wait_for(lambda: bool(repo_files(repo_path, "locks")), 60, "the backup's lock", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode(errors="replace")
    assert proc.returncode == EXIT_INTERRUPTED, f"exit {proc.returncode}, stderr:\n{err}"
    assert "Traceback" not in err
    assert one_line(err) == "strongroom: interrupted"
    assert repo_files(repo_path, "snapshots") == []
    assert repo_files(repo_path, "locks") == [], "an interrupted backup left its lock behind"
    assert not [p for p in (repo_path / "data").rglob("*") if ".tmp-" in p.name], "temporary files left behind"
    cdoc = json.loads(ok(["check", "--json"], initialised).stdout)
    assert cdoc["ok"] is True and cdoc["errors"] == []
    # and the next backup completes and restores
    ok(["backup", str(src)], initialised)
    target = tmp_path / "t"
    ok(["restore", "latest", "--target", str(target)], initialised)
    assert tree_digest(restored_root(target, src)) == tree_digest(src)


def test_keyboard_interrupt_in_process(inproc, capsys, source, monkeypatch):
    import strongroom.commands.backup as backup_module

    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK

    def interrupt(path: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_module, "open_for_reading", interrupt)
    code, _, err = run_main(["backup", str(source)], capsys)
    assert code == EXIT_INTERRUPTED
    assert one_line(err) == "strongroom: interrupted"
    assert list((inproc / "locks").iterdir()) == []
    assert list((inproc / "snapshots").iterdir()) == []


# -- unexpected errors: one line, --debug shows the traceback -------------------------------------


def test_unexpected_error_is_one_line(inproc, capsys, source, monkeypatch):
    import strongroom.commands.backup as backup_module

    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(backup_module, "run_backup", boom)  # the backup command imports it when it runs
    code, _, err = run_main(["backup", str(source)], capsys)
    assert code == EXIT_ERROR
    assert "RuntimeError: boom" in one_line(err) and "--debug" in err
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--debug", "backup", str(source)])
    assert exc.value.code == EXIT_ERROR
    assert "Traceback" in capsys.readouterr().err
