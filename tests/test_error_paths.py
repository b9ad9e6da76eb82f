"""Failures of the environment, not of strongroom: each ends in one line on stderr with the
documented exit code (README, "Exit codes"), never a traceback or an "unexpected error".

Permission cases run the CLI without the root's override of file modes (capsh drops it) when
the tests run as root, as they do in CI containers.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from strongroom.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE

from conftest import WEAK_KDF_ARGS, strongroom_command
from test_cli import initialised, inproc, make_source, ok, one_line, run, run_main, subprocess_env  # noqa: F401 (fixtures)

CACHE_HINT = "(set STRONGROOM_CACHE_DIR or XDG_CACHE_HOME to a folder you can write)"


def run_unprivileged(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``strongroom ARGS`` for which file modes apply, even to root."""
    command = strongroom_command() + args
    if os.geteuid() == 0:
        if shutil.which("capsh") is None:
            pytest.skip("running as root without capsh: file modes do not apply")
        command = ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c",
                   shlex.join(command)]
    proc = subprocess.run(command, env=subprocess_env(env), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_only(root: Path) -> None:
    for folder, dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o400)
        os.chmod(folder, 0o500)


@pytest.fixture
def inproc_cache(inproc, tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_CACHE_DIR", str(tmp_path / "cache"))
    return inproc


# -- the cache folder ------------------------------------------------------------------------------


def test_cache_folder_that_is_a_file(initialised, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    proc = run(["snapshots"], dict(initialised, STRONGROOM_CACHE_DIR=str(afile)))
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_USAGE, f"strongroom: cannot use the cache folder {afile}: it is not a folder {CACHE_HINT}")
    env = {k: v for k, v in initialised.items() if k != "STRONGROOM_CACHE_DIR"}
    proc = run(["backup", str(tmp_path)], dict(env, XDG_CACHE_HOME=str(afile)))
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_USAGE, f"strongroom: cannot use the cache folder {afile}/strongroom: Not a directory {CACHE_HINT}")
    assert afile.read_text() == "not a folder"


def test_cache_folder_that_cannot_be_written(initialised, tmp_path):
    cache = tmp_path / "read-only-cache"
    cache.mkdir(mode=0o500)
    proc = run_unprivileged(["snapshots"], dict(initialised, STRONGROOM_CACHE_DIR=str(cache)))
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_USAGE, f"strongroom: cannot use the cache folder {cache}: Permission denied {CACHE_HINT}")


@pytest.mark.parametrize("damage", ["index is a file", "messages is a file", "index holds no LMDB"])
def test_a_damaged_cache_inside_the_cache_folder(initialised, tmp_path, damage):
    # the repository's own cache (index, messages) is rebuilt from the repository: a damaged one
    # is named in one line with what to do, and a backup still stores its snapshot
    source = make_source(tmp_path)
    ok(["backup", str(source)], initialised)
    [cache] = [p for p in Path(initialised["STRONGROOM_CACHE_DIR"]).iterdir() if p.name != "key-hints"]
    name = damage.split()[0]
    shutil.rmtree(cache / name)
    if damage.endswith("a file"):
        (cache / name).write_text("not a folder")
    else:
        (cache / name).mkdir()
        (cache / name / "data.mdb").write_bytes(b"not an LMDB file" * 512)
    hint = "(it holds nothing the repository does not: remove it, and it is rebuilt)"
    if name == "index":
        proc = run(["snapshots"], initialised)
        line = one_line(proc.stderr)
        assert proc.returncode == EXIT_ERROR and line.startswith(f"strongroom: cannot open the local cache {cache / name}: ")
        assert line.endswith(hint) and ("it is not a folder" in line or "MDB_INVALID" in line)
    else:  # the messages cache: the backup is stored, its catalogue is not (and says why)
        proc = run(["backup", str(source)], initialised)
        assert proc.returncode == EXIT_OK and f"cannot open the local cache {cache / name}: it is not a folder {hint}" in proc.stderr
    if (cache / name).is_file():
        (cache / name).unlink()
    else:
        shutil.rmtree(cache / name)
    assert run(["snapshots"], initialised).returncode == EXIT_OK  # removed: rebuilt


# -- the repository and the password ---------------------------------------------------------------


def test_read_only_repository_lists_but_refuses_to_write(initialised, repo_path, tmp_path):
    source = make_source(tmp_path)
    ok(["backup", str(source)], initialised)
    read_only(repo_path)
    listed = run_unprivileged(["snapshots", "--json"], initialised)
    assert listed.returncode == EXIT_OK and len(__import__("json").loads(listed.stdout)) == 1
    proc = run_unprivileged(["backup", str(source)], initialised)
    line = one_line(proc.stderr)
    assert proc.returncode == EXIT_ERROR
    assert line.startswith("strongroom: cannot write locks/") and line.endswith(
        f": Permission denied ({repo_path}/{line.split()[3][:-1]}); commands that only read (check, restore, diff, "
        "stats, messages) can run with --no-lock")


def test_a_read_only_repository_is_read_with_no_lock(initialised, repo_path, tmp_path):
    source = make_source(tmp_path)
    ok(["backup", str(source)], initialised)
    ok(["backup", str(source)], initialised)
    read_only(repo_path)
    before = sorted(p.relative_to(repo_path) for p in repo_path.rglob("*"))
    refused = run_unprivileged(["check"], initialised)
    assert refused.returncode == EXIT_ERROR and one_line(refused.stderr).endswith("can run with --no-lock")
    for args in (["check", "--read-data"], ["stats", "--json"], ["diff", "latest", "latest"],
                 ["restore", "latest", "--target", str(tmp_path / "restored")], ["messages", "search", "x", "--json"]):
        proc = run_unprivileged(args + ["--no-lock"], initialised)
        assert proc.returncode == EXIT_OK, (args, proc.stderr)
    restored = tmp_path / "restored" / source.relative_to("/")
    assert sorted(p.relative_to(restored) for p in restored.rglob("*")) == sorted(p.relative_to(source) for p in source.rglob("*"))
    assert sorted(p.relative_to(repo_path) for p in repo_path.rglob("*")) == before  # nothing written, no lock
    assert run(["backup", "--no-lock", str(source)], initialised).returncode == EXIT_USAGE  # only where it reads


def test_init_in_a_read_only_folder(cli_env, tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir(mode=0o500)
    proc = run_unprivileged(["init", *WEAK_KDF_ARGS], dict(cli_env, STRONGROOM_REPO=str(parent / "repo")))
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_ERROR, f"strongroom: cannot create repository at {parent / 'repo'}: Permission denied")


def test_init_with_a_missing_password_file_creates_nothing(cli_env, repo_path, tmp_path):
    env = {k: v for k, v in cli_env.items() if k != "STRONGROOM_PASSWORD"}
    proc = run(["init", *WEAK_KDF_ARGS, "--password-file", str(tmp_path / "nope")], env)
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_USAGE, f"strongroom: cannot read password file {tmp_path / 'nope'}: No such file or directory")
    assert not repo_path.exists()


def test_password_command_with_an_unclosed_quote(initialised):
    env = {k: v for k, v in initialised.items() if k != "STRONGROOM_PASSWORD"}
    proc = run(["snapshots", "--password-command", "echo 'secret"], env)
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_USAGE, "strongroom: invalid password command \"echo 'secret\": No closing quotation")


# -- sources that change under the backup ----------------------------------------------------------


def test_a_folder_vanishing_during_the_backup_is_a_partial_backup(inproc_cache, capsys, tmp_path, monkeypatch):
    import strongroom.commands.backup as backup_module

    source = make_source(tmp_path)
    real_list_dir = backup_module.list_dir

    def list_then_remove_notes(path: bytes):
        entries = real_list_dir(path)
        if path == os.fsencode(source):
            shutil.rmtree(source / "notes")  # listed, then gone before the walk gets there
        return entries

    monkeypatch.setattr(backup_module, "list_dir", list_then_remove_notes)
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    code, _, err = run_main(["backup", str(source)], capsys)
    assert code == EXIT_PARTIAL
    assert err.splitlines() == [f"warning: cannot list {source / 'notes'}: No such file or directory"]
    assert len(list((inproc_cache / "snapshots").iterdir())) == 1


def test_a_source_path_vanishing_before_the_walk(inproc_cache, capsys, tmp_path, monkeypatch):
    import strongroom.commands.backup as backup_module

    source = make_source(tmp_path)
    real_find_parent = backup_module._find_parent

    def find_parent_then_vanish(*args, **kwargs):  # runs after the paths were checked
        parent = real_find_parent(*args, **kwargs)
        shutil.rmtree(source)
        return parent

    monkeypatch.setattr(backup_module, "_find_parent", find_parent_then_vanish)
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    code, _, err = run_main(["backup", str(source)], capsys)
    assert (code, one_line(err)) == (EXIT_ERROR, f"strongroom: cannot back up {source}: No such file or directory")
    assert list((inproc_cache / "snapshots").iterdir()) == [] and list((inproc_cache / "locks").iterdir()) == []


# -- restore targets -------------------------------------------------------------------------------


def test_restore_target_below_a_file(initialised, tmp_path):
    ok(["backup", str(make_source(tmp_path))], initialised)
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = run(["restore", "latest", "--target", str(afile / "restored")], initialised)
    assert (proc.returncode, one_line(proc.stderr)) == (
        EXIT_ERROR, f"strongroom: cannot restore to {afile / 'restored'}: Not a directory")
    assert afile.read_text() == "x"


def test_restore_onto_a_read_only_target(initialised, tmp_path):
    source = make_source(tmp_path)
    ok(["backup", str(source)], initialised)
    target = tmp_path / "read-only-target"
    target.mkdir(mode=0o500)
    proc = run_unprivileged(["restore", "latest", "--target", str(target)], initialised)
    top = "/" + source.parts[1]  # the first folder of the snapshot: it cannot be made
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.splitlines() == [f"warning: {top}: Permission denied",
                                        "strongroom: 1 item(s) could not be restored"]
    assert list(target.iterdir()) == []


def test_restore_onto_a_full_disk(inproc_cache, capsys, tmp_path, monkeypatch):
    import strongroom.restore_target as target_module

    source = make_source(tmp_path)
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    assert run_main(["backup", str(source)], capsys)[0] == EXIT_OK

    def full(fd, buffers, total):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(target_module, "_writev_all", full)
    code, _, err = run_main(["restore", "latest", "--target", str(tmp_path / "t")], capsys)
    written = ["chats/2024/general.json", "chats/2024/random.json", "notes/todo.md", "photo.bin"]
    assert code == EXIT_ERROR
    assert sorted(err.splitlines()) == sorted(
        [f"warning: {source / name}: No space left on device" for name in written]
        + ["strongroom: 4 item(s) could not be restored"])


def test_restore_of_an_ambiguous_snapshot_prefix(inproc_cache, capsys, tmp_path):
    source = make_source(tmp_path)
    assert run_main(["init", *WEAK_KDF_ARGS], capsys)[0] == EXIT_OK
    for i in range(17):  # 17 ids over 16 first hex digits: two share theirs
        assert run_main(["backup", "--tag", str(i), str(source)], capsys)[0] == EXIT_OK
    ids = [p.name for p in (inproc_cache / "snapshots").iterdir()]
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) >= 2)
    matches = sum(i.startswith(first) for i in ids)
    code, _, err = run_main(["restore", first, "--target", str(tmp_path / "t")], capsys)
    assert (code, one_line(err)) == (EXIT_USAGE, f"strongroom: snapshot id prefix {first} is ambiguous "
                                                 f"({matches} matches)")
    assert not (tmp_path / "t").exists()
