"""Opening the key begun early (strongroom/opening.py): the Argon2id derivation runs in a thread
while start-up goes on, with the same errors, in the same order, as opening without it; with
several key files the one that opened last time is tried first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import PASSWORD, WEAK_KDF, strongroom_command
from strongroom import cli, interrupts
from strongroom import config as config_module
from strongroom import opening
from strongroom.commands.keys import add_key
from strongroom.crypto import keyfile
from strongroom.crypto.keyfile import Derivation, KdfParams
from strongroom.errors import IntegrityError, RepositoryNotFound, UnsupportedFormat, WrongPassword
from strongroom.opening import KeyOpening
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

OTHER = b"a second passphrase for the other key"


@pytest.fixture
def derivations(monkeypatch):
    """Every Argon2id derivation run (early or not), as (memory, iterations, lanes, salt)."""
    seen: list[tuple] = []
    real = KdfParams.derive

    def counting(self, password, salt):
        seen.append((self.memory_kib, self.iterations, self.lanes, salt))
        return real(self, password, salt)

    monkeypatch.setattr(KdfParams, "derive", counting)
    return seen


def _key_files(repo_path) -> list[str]:
    return sorted(f"keys/{name}" for name in os.listdir(repo_path / "keys"))


def _two_keys(repo) -> tuple[str, str]:
    """(the first key's name, the name of a second key file that opens with OTHER)."""
    first = repo.key_name
    add_key(repo, OTHER, WEAK_KDF)
    second = next(name for name in _key_files(repo.storage.root) if name != first)
    return first, second


def test_derivation_in_a_thread_gives_the_same_key() -> None:
    params, salt = KdfParams(memory_kib=1024, iterations=2, lanes=2), bytes(range(16))
    assert Derivation(params, b"pw", salt).result() == params.derive(b"pw", salt)


def test_an_error_in_the_derivation_thread_is_raised_by_result() -> None:
    derivation = Derivation(KdfParams(memory_kib=8, iterations=1, lanes=4), b"pw", bytes(16))  # memory < 8 x lanes
    with pytest.raises(ValueError):
        derivation.result()


def test_a_stop_asked_for_before_the_wait_still_ends_it() -> None:
    # Python sometimes drops a KeyboardInterrupt ("Exception ignored" in a weakref callback at
    # the end of an import); the CLI's handler also records the stop, and the wait checks it.
    derivation = Derivation(KdfParams(memory_kib=65536, iterations=30, lanes=4), b"pw", bytes(16))
    interrupts.requested.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            derivation.result()
        assert derivation._thread.is_alive()  # the wait ended, not the derivation
    finally:
        interrupts.requested.clear()
        derivation._thread.join()  # one derivation at a time: do not hold up the next test's


def test_signals_during_start_up_imports_are_held_then_raised(monkeypatch) -> None:
    monkeypatch.setattr(interrupts, "requested", threading.Event())
    previous = signal.signal(signal.SIGINT, cli._interrupt)
    reached_the_end = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with cli._interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # bytecode boundaries, where a raising handler would have run
                    pass
                reached_the_end = True
        assert reached_the_end and signal.getsignal(signal.SIGINT) is cli._interrupt
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_seen_by_a_source_string_still_exits_130_under_python_m(tmp_path) -> None:
    # CPython marks a KeyboardInterrupt that ends a PyRun_String evaluation (what Cython's module
    # initialisation uses) as unhandled even when it is caught, and `python -m` then exits by
    # SIGINT (-2). The CLI's exit path clears the mark.
    (tmp_path / "interrupted_module.py").write_text(
        "from strongroom import cli\n"
        "try:\n"
        "    exec('raise KeyboardInterrupt')\n"
        "except KeyboardInterrupt:\n"
        "    cli._exit_interrupted()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.dirname(os.path.dirname(interrupts.__file__))]))
    done = subprocess.run([sys.executable, "-m", "interrupted_module"], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (130, "")


def test_config_name_is_the_config_modules() -> None:
    assert opening.CONFIG_NAME == config_module.CONFIG_NAME


def test_no_repository_is_reported_before_any_derivation(tmp_path, derivations) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryNotFound, match="no repository at"):
        KeyOpening(LocalStorage(tmp_path / "empty"), PASSWORD)
    assert derivations == []


def test_an_unsupported_config_is_reported_before_any_derivation(repo, repo_path, derivations) -> None:
    data = bytearray((repo_path / "config").read_bytes())
    data[4] = 99  # the format version in the sealed header
    (repo_path / "config").write_bytes(bytes(data))
    with pytest.raises(UnsupportedFormat, match="config: format version 99 is not supported"):
        Repository.open(LocalStorage(repo_path), PASSWORD)
    assert derivations == []


def test_the_early_derivation_is_the_only_one_for_the_usual_open(repo, repo_path, derivations) -> None:
    opening_ = KeyOpening(LocalStorage(repo_path), PASSWORD)
    reopened = Repository.open(LocalStorage(repo_path), PASSWORD, opening=opening_)
    assert reopened.key_name == repo.key_name and reopened.config.id == repo.config.id
    assert len(derivations) == 1
    reopened.close()


def test_wrong_password_tries_every_key_file_once(repo, repo_path, derivations) -> None:
    _two_keys(repo)
    derivations.clear()
    with pytest.raises(WrongPassword, match=r"^wrong password: no key in the repository opens with it$"):
        Repository.open(LocalStorage(repo_path), b"not the password")
    assert len(derivations) == 2 and len({d[3] for d in derivations}) == 2  # two salts: each key file once


def test_the_key_that_opened_last_time_is_tried_first(repo, repo_path, derivations) -> None:
    first, second = _two_keys(repo)
    for password, name in ((OTHER, second), (PASSWORD, first)):
        derivations.clear()
        with Repository.open(LocalStorage(repo_path), password) as r:  # learns which key opens
            assert r.key_name == name
        derivations.clear()
        with Repository.open(LocalStorage(repo_path), password) as r:
            assert r.key_name == name
        assert len(derivations) == 1, name


def test_a_damaged_key_file_does_not_lock_out_the_others(repo, repo_path, derivations) -> None:
    first, second = _two_keys(repo)
    (repo_path / first).write_bytes(b"{not json")
    derivations.clear()
    with Repository.open(LocalStorage(repo_path), OTHER) as r:
        assert r.key_name == second
    with pytest.raises(WrongPassword, match=r"\(1 key file\(s\) unreadable: keys/[0-9a-f]+: malformed key file"):
        Repository.open(LocalStorage(repo_path), b"not the password")


def test_a_key_file_damaged_after_its_derivation_started(repo, repo_path, monkeypatch) -> None:
    """The early derivation belongs to the bytes it was started for; a sealed master secret that
    does not authenticate is a non-matching key, not a crash."""
    opening_ = KeyOpening(LocalStorage(repo_path), PASSWORD)
    name, data, derivation = opening_._first
    doc = json.loads(data)
    doc["master"] = doc["master"][:-8] + ("A" * 8 if not doc["master"].endswith("A" * 8) else "B" * 8)
    opening_._first = (name, json.dumps(doc).encode(), derivation)
    with pytest.raises(WrongPassword):
        opening_.open_key()


def test_an_unwritable_hint_costs_nothing_but_derivations(repo, repo_path, tmp_path, derivations) -> None:
    first, second = _two_keys(repo)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    with Repository.open(LocalStorage(repo_path), OTHER, cache_root=str(tmp_path / "cache2")) as r:
        assert r.key_name == second
    derivations.clear()
    assert KeyOpening(LocalStorage(repo_path), OTHER, cache_root=str(blocked)).open_key()[0] == second
    # no hint could be kept: tried again in name order, up to the one that opens
    assert len(derivations) == sorted([first, second]).index(second) + 1


def test_a_key_file_removed_after_listing_is_skipped(repo, repo_path) -> None:
    first, second = _two_keys(repo)
    storage = LocalStorage(repo_path)
    opening_ = KeyOpening(storage, OTHER)
    other = next(n for n in opening_.key_names if n != opening_.key_names[0])
    os.remove(repo_path / other)
    if other == second:
        with pytest.raises(WrongPassword):
            opening_.open_key()
    else:
        assert opening_.open_key()[0] == second


def test_a_key_file_of_another_repository_is_passed_over(repo, repo_path, tmp_path, derivations) -> None:
    # the same password opens a key file copied from another repository; its key does not open
    # this config, so the next key file is tried (and remembered as the one that opens)
    own, config_id = repo.key_name, repo.config.id
    repo.close()
    with Repository.init(LocalStorage(tmp_path / "other"), PASSWORD, kdf=WEAK_KDF) as other:
        foreign = other.key_name
    (repo_path / foreign).write_bytes((tmp_path / "other" / foreign).read_bytes())
    cache = str(tmp_path / "cache")
    opening_ = KeyOpening(LocalStorage(repo_path), PASSWORD, cache_root=cache)
    opening_._write_hint(foreign)  # as if it had opened last time: tried first
    derivations.clear()
    with Repository.open(LocalStorage(repo_path), PASSWORD, cache_root=cache) as r:
        assert (r.key_name, r.config.id) == (own, config_id)
    assert len(derivations) == 2  # the foreign key, then ours
    with Repository.open(LocalStorage(repo_path), PASSWORD, cache_root=cache) as r:
        assert r.key_name == own and len(derivations) == 3  # ours is now tried first
    os.remove(repo_path / own)  # only the foreign key is left: one line that says what is wrong
    with pytest.raises(IntegrityError, match=f"config: cannot be opened by the key file.s. the password opens "
                                             f"\\({foreign}\\): the config is damaged, or those keys belong to "
                                             "another repository"):
        Repository.open(LocalStorage(repo_path), PASSWORD, cache_root=cache)


def _slow_key_file(repo_path) -> None:
    """Ask for a derivation of many seconds (256 MiB x 100 passes). The key file no longer opens
    (its parameters are bound to the key), but the derivation runs in full unless interrupted."""
    (path,) = [repo_path / name for name in _key_files(repo_path)]
    doc = json.loads(path.read_bytes())
    doc["kdf"].update(memory_kib=262144, iterations=100, lanes=4)
    path.write_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_during_the_derivation_exits_at_once(repo, repo_path, cli_env, sig) -> None:
    repo.close()
    _slow_key_file(repo_path)
    proc = subprocess.Popen(strongroom_command() + ["snapshots"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_the_derivation(proc)  # start-up done: its 256 MiB are taken (however loaded the machine)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.strip()) == (130, "strongroom: interrupted")  # click ends the line first
    assert time.monotonic() - sent < 5  # the derivation (~20 s on an idle core) did not have to finish


def _wait_for_the_derivation(proc, timeout: float = 60) -> None:
    """Until the process holds Argon2id's 256 MiB (its resident memory passes 200 MiB)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(f"/proc/{proc.pid}/status") as f:
            rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        if rss_kib > 200 * 1024:
            return
        time.sleep(0.02)
    raise AssertionError("the derivation did not start")


def test_cli_wrong_password_and_damaged_key_are_one_line(repo, repo_path, cli_env) -> None:
    repo.close()
    env = dict(cli_env, STRONGROOM_PASSWORD="wrong")
    done = subprocess.run(strongroom_command() + ["snapshots"], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (12, "strongroom: wrong password: no key in the repository opens with it\n")
    (key,) = _key_files(repo_path)
    (repo_path / key).write_bytes(b"[]")
    done = subprocess.run(strongroom_command() + ["snapshots"], env=cli_env, capture_output=True, text=True)
    assert done.returncode == 12
    assert done.stderr == (f"strongroom: wrong password: no key in the repository opens with it (1 key file(s) "
                           f"unreadable: {key}: key file version None is not supported)\n")


def test_cli_missing_repository_exits_10_without_reading_a_password(tmp_path, cli_env) -> None:
    env = dict(cli_env, STRONGROOM_REPO=str(tmp_path / "nothing-here"))
    env.pop("STRONGROOM_PASSWORD")
    done = subprocess.run(strongroom_command() + ["snapshots"], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (
        10, f"strongroom: no repository at {tmp_path / 'nothing-here'} (run `strongroom init` to create one)\n")


def test_keyfile_module_keeps_its_open_function_for_pre_derived_keys(repo, repo_path) -> None:
    (key,) = _key_files(repo_path)
    data = (repo_path / key).read_bytes()
    info, params, salt, _ = keyfile.read_key_info(data, key)
    mismatched = Derivation(params, PASSWORD, bytes(16))  # another salt: not used, derived anew
    assert keyfile.open_access_key(data, PASSWORD, key, derivation=mismatched) is not None
    with pytest.raises(IntegrityError):
        keyfile.open_access_key(b"{not json", PASSWORD, key)


# -- the derivation begun before the command line is parsed (cli/early.py) ----------------------

def test_opening_commands_are_the_cli_commands_that_open_a_repository() -> None:
    from strongroom.cli import cli, early

    names = set(cli.list_commands(None))
    assert early.OPENING_COMMANDS <= names
    assert names - early.OPENING_COMMANDS == {"init", "demo", "run", "schedule"}


@pytest.fixture
def env_repo(repo, repo_path, monkeypatch):
    repo.close()
    monkeypatch.setenv("STRONGROOM_REPO", str(repo_path))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    return repo_path


def _run(argv, capsys) -> tuple[int, str, str]:
    from strongroom.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("from_file", [False, True])
def test_a_command_from_the_environment_derives_once_and_early(env_repo, derivations, capsys, monkeypatch, tmp_path,
                                                               from_file) -> None:
    from strongroom.cli import early

    if from_file:
        (tmp_path / "pw").write_bytes(PASSWORD + b"\r\nsecond line ignored\n")
        monkeypatch.setenv("STRONGROOM_PASSWORD_FILE", str(tmp_path / "pw"))
        monkeypatch.setenv("STRONGROOM_PASSWORD", "ignored: the file comes first")

    taken = []
    real_take = early.take
    monkeypatch.setattr(early, "take", lambda url, pw: taken.append(real_take(url, pw)) or taken[-1])
    assert _run(["snapshots"], capsys)[0] == 0
    assert len(derivations) == 1 and taken[0] is not None  # the early opening was the one used


@pytest.mark.parametrize("argv", [["snapshots", "-r", "{repo}"], ["snapshots", "--repo={repo}"], ["--help"],
                                  ["snapshots", "--help"], ["init"], ["demo"], []])
def test_no_early_start_when_the_command_line_may_say_otherwise(env_repo, argv, derivations) -> None:
    from strongroom.cli import early

    early.start([a.format(repo=env_repo) for a in argv])
    assert early._early is None and derivations == []


@pytest.mark.parametrize("variable, value", [("STRONGROOM_PASSWORD_COMMAND", "echo x"), ("STRONGROOM_REPO", "s3://b/p"),
                                             ("STRONGROOM_PASSWORD", "")])
def test_no_early_start_without_a_local_repository_and_a_plain_password(env_repo, monkeypatch, variable, value,
                                                                          derivations) -> None:
    from strongroom.cli import early

    monkeypatch.setenv(variable, value)
    early.start(["snapshots"])
    assert early._early is None and derivations == []


def test_an_early_opening_for_another_password_or_location_is_not_used(env_repo, tmp_path, derivations) -> None:
    from strongroom.cli import early
    from strongroom.cli.context import Location

    password_file = tmp_path / "pw"
    password_file.write_bytes(PASSWORD + b"\n")
    early.start(["snapshots"], {"STRONGROOM_REPO": str(env_repo), "STRONGROOM_PASSWORD": "a guess"})
    assert early._early is not None
    assert early.take(str(env_repo) + "/", PASSWORD) is None and early.take(str(env_repo), b"a guess!") is None
    with Location(str(env_repo), str(password_file), None).open() as r:  # the right password: opened anew
        assert r.key_name.startswith("keys/")
    assert len(derivations) == 2
    assert early._early is not None  # still there: only a matching open takes it


def test_an_early_opening_meeting_an_error_leaves_it_to_the_usual_path(env_repo, capsys, derivations) -> None:
    (env_repo / "config").write_bytes(b"SRCF\x07" + bytes(40))
    code, _, err = _run(["snapshots"], capsys)
    assert (code, err) == (1, "strongroom: config: format version 7 is not supported (this strongroom reads 1)\n")
    assert derivations == []
