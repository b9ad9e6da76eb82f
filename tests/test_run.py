"""`strongroom run`: every source backed up even when others fail, retention, prune cadence,
check and off-site copy carried out, the worst step's exit code, one summary (human or JSON)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PASSWORD, WEAK_KDF, strongroom_command
from strongroom.cli.operations import open_repository
from strongroom.commands.run import RunOptions, run_policy, worst_exit_code
from strongroom.errors import UsageError
from strongroom.jobs.policyfile import load_policy_file
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

OFFSITE_PASSWORD = "off-site password"
DAY = 86400.0
# Reading a process's memory file at offset 0 fails with EIO even for root: a real unreadable file.
UNREADABLE = f"/proc/{os.getpid()}/mem"


def make_repos(tmp_path: Path) -> None:
    Repository.init(LocalStorage(tmp_path / "main"), PASSWORD, kdf=WEAK_KDF).close()
    Repository.init(LocalStorage(tmp_path / "offsite"), OFFSITE_PASSWORD.encode(), kdf=WEAK_KDF).close()
    (tmp_path / "offsite.pw").write_text(OFFSITE_PASSWORD + "\n")
    data = tmp_path / "data"
    (data / "channel").mkdir(parents=True)
    (data / "channel" / "2026-11-21.json").write_text('[{"user": "ann", "text": "hello"}]\n' * 50)
    (data / "users.json").write_text('[{"id": 1, "name": "ann"}]\n')


def policy_text(extra_sources: str = "", extra: str = "") -> str:
    return f"""\
[repositories.main]
location = "main"
password_env = "TEST_MAIN_PASSWORD"
copy_to = ["offsite"]

[repositories.offsite]
location = "offsite"
password_file = "offsite.pw"

[sources.files]
paths = ["data"]
tags = ["chat"]

[sources.db]
command = ["sh", "-c", "printf 'dump of the database'"]
filename = "db.dump"
{extra_sources}
[retention]
keep_last = 1

[prune]
every = "7d"

[check]
read_data_subset = "100%"

[run]
state_dir = "state"
{extra}"""


@pytest.fixture
def policy_path(tmp_path, monkeypatch) -> Path:
    make_repos(tmp_path)
    monkeypatch.setenv("TEST_MAIN_PASSWORD", PASSWORD.decode())
    return tmp_path / "strongroom.toml"


def run_file(path: Path, text: str, *, clock=None, jobs=()) -> object:
    path.write_text(text)
    kwargs = {"clock": clock} if clock else {}
    return run_policy(load_policy_file(str(path)), RunOptions(jobs=list(jobs)), open_repository, **kwargs)


def outline(result) -> list[tuple]:
    return [(s.job, s.step, s.repository, s.status, s.exit_code) for s in result.steps]


def snapshots(path: Path, password: bytes) -> list:
    with Repository.open(LocalStorage(path), password) as repo:
        return repo.snapshots()


def test_failing_sources_do_not_stop_the_others(policy_path, tmp_path) -> None:
    broken = """
[sources.broken-dump]
command = ["sh", "-c", "echo half a dump; exit 4"]

[sources.gone]
paths = ["no-such-folder"]
"""
    result = run_file(policy_path, policy_text(broken))
    assert outline(result) == [
        ("files", "open", "main", "ok", 0),
        ("files", "backup", "main", "ok", 0),
        ("db", "backup", "main", "ok", 0),
        ("broken-dump", "backup", "main", "failed", 1),
        ("gone", "backup", "main", "failed", 1),
        ("main", "forget", "main", "ok", 0),
        ("main", "prune", "main", "ok", 0),
        ("main", "check", "main", "ok", 0),
        ("main", "open", "offsite", "ok", 0),
        ("main", "copy", "offsite", "ok", 0),
        ("offsite", "forget", "offsite", "ok", 0),
        ("offsite", "prune", "offsite", "ok", 0),
    ]
    assert result.exit_code == 1
    steps = {(s.job, s.step): s for s in result.steps}
    assert steps["broken-dump", "backup"].message == "command sh exited with status 4: no snapshot written"
    assert steps["gone", "backup"].message.startswith("cannot back up ") and \
        steps["gone", "backup"].message.endswith("no-such-folder: no such file or directory")
    main = snapshots(tmp_path / "main", PASSWORD)
    assert sorted(s.paths[0] for s in main) == ["/db.dump", str(tmp_path / "data")]
    assert {s.id for s in main} == {steps["files", "backup"].snapshot, steps["db", "backup"].snapshot}
    assert steps["files", "backup"].bytes_read == 50 * 35 + 27 and steps["files", "backup"].bytes_added > 0
    offsite = snapshots(tmp_path / "offsite", OFFSITE_PASSWORD.encode())
    assert sorted(s.original for s in offsite) == sorted(s.id for s in main)
    assert steps["main", "copy"].details["skipped"] == 0 and len(steps["main", "copy"].details["copied"]) == 2
    assert steps["main", "check"].details["packs_read"] == steps["main", "check"].details["packs"] > 0
    assert result.repositories["main"].snapshots == 2 and result.repositories["offsite"].snapshots == 2
    assert result.repositories["main"].check_errors == 0 and result.repositories["offsite"].check_errors is None
    assert result.repositories["main"].size_bytes == sum(
        f.stat().st_size for f in (tmp_path / "main" / "data").rglob("*") if f.is_file())


def test_retention_applies_in_both_repositories_and_only_jobs_named_run(policy_path, tmp_path) -> None:
    first = run_file(policy_path, policy_text())
    assert first.exit_code == 0
    (tmp_path / "data" / "users.json").write_text('[{"id": 1, "name": "ann"}, {"id": 2, "name": "bo"}]\n')
    second = run_file(policy_path, policy_text(), jobs=["files"])
    assert second.jobs == ["files"]
    assert [s.step for s in second.steps if s.job == "files"] == ["open", "backup"]
    forget = next(s for s in second.steps if s.step == "forget" and s.repository == "main")
    first_files = next(s.snapshot for s in first.steps if s.job == "files" and s.step == "backup")
    assert forget.details == {"removed": [first_files], "kept": 2}  # keep_last 1 per host and paths
    main = {s.paths[0]: s.id for s in snapshots(tmp_path / "main", PASSWORD)}
    assert main[str(tmp_path / "data")] == next(s.snapshot for s in second.steps if s.step == "backup")
    offsite = snapshots(tmp_path / "offsite", OFFSITE_PASSWORD.encode())
    assert sorted(s.original for s in offsite) == sorted(main.values())
    with pytest.raises(UsageError, match="no source named 'nope'"):
        run_file(policy_path, policy_text(), jobs=["nope"])


def test_partial_backup_exits_3_and_errors_beat_it(policy_path, tmp_path) -> None:
    unreadable = f'\n[sources.proc]\npaths = ["{UNREADABLE}"]\n'
    result = run_file(policy_path, policy_text(unreadable))
    proc = next(s for s in result.steps if s.job == "proc")
    assert (proc.status, proc.exit_code) == ("partial", 3)
    assert proc.message.endswith(f"1 item(s) could not be read (first: cannot read {UNREADABLE}: "
                                 f"Input/output error)")
    assert proc.snapshot is not None
    assert result.exit_code == 3
    assert worst_exit_code([0, 3, 0]) == 3 and worst_exit_code([3, 12, 1]) == 12 and worst_exit_code([0, 0]) == 0


def test_prune_runs_when_due(policy_path, tmp_path) -> None:
    now = [1_800_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    prune_steps = lambda r: [(s.repository, s.status) for s in r.steps if s.step == "prune"]  # noqa: E731
    assert prune_steps(run_file(policy_path, policy_text(), clock=clock)) == [("main", "ok"), ("offsite", "ok")]
    now[0] += 6 * DAY
    result = run_file(policy_path, policy_text(), clock=clock)
    assert prune_steps(result) == [("main", "skipped"), ("offsite", "skipped")]
    assert result.exit_code == 0
    assert next(s for s in result.steps if s.step == "prune").message == (
        "not due: last pruned 2027-01-15 08:00 UTC, every 7d; next after 2027-01-22 08:00 UTC")
    now[0] += 1 * DAY
    assert prune_steps(run_file(policy_path, policy_text(), clock=clock)) == [("main", "ok"), ("offsite", "ok")]
    state = json.loads((tmp_path / "state" / "run-state.json").read_text())
    assert sorted(state["last_prune"].values()) == [now[0], now[0]]
    assert state["last_success"] == {"job:files": now[0], "job:db": now[0], "run": now[0]}


def test_wrong_password_fails_that_repository_only(policy_path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TEST_MAIN_PASSWORD", "not the password")
    result = run_file(policy_path, policy_text())
    assert outline(result) == [("files", "open", "main", "failed", 12),
                               ("files", "backup", "main", "failed", 12),
                               ("db", "backup", "main", "failed", 12)]
    assert result.steps[2].message.startswith("repository main not opened: ")
    assert result.exit_code == 12


def cli_run(tmp_path: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TEST_MAIN_PASSWORD=PASSWORD.decode(), **(env_extra or {}))
    return subprocess.run([*strongroom_command(), "run", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_json_and_human_summary(policy_path, tmp_path) -> None:
    policy_path.write_text(policy_text('\n[sources.broken]\ncommand = "false"\n'))
    out = cli_run(tmp_path, "--config", str(policy_path), "--json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == 1 and doc["jobs"] == ["files", "db", "broken"]
    assert [(s["job"], s["step"], s["status"]) for s in doc["steps"]][:4] == [
        ("files", "open", "ok"), ("files", "backup", "ok"), ("db", "backup", "ok"), ("broken", "backup", "failed")]
    assert set(doc["steps"][1]) == {"job", "step", "repository", "status", "exit_code", "message", "snapshot",
                                    "bytes_read", "bytes_added", "duration_s", "details"}
    assert doc["repositories"]["main"]["snapshots"] == 2
    # human: one line per step, failures on stderr, and the summary; STRONGROOM_CONFIG as the default
    out = cli_run(tmp_path, "files", env_extra={"STRONGROOM_CONFIG": str(policy_path)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ok       open    files            main         ")
    assert lines[1].startswith("ok       backup  files            main         snapshot ")
    assert lines[-1].startswith("run: 1 job(s), 9 step(s): 7 ok, 2 skipped in ")
    assert lines[-1].endswith("; exit code 0")
    out = cli_run(tmp_path, "--config", str(tmp_path / "missing.toml"))
    assert (out.returncode, out.stderr) == (2, f"strongroom: cannot read policy file {tmp_path / 'missing.toml'}: "
                                               f"No such file or directory\n")


def test_compression_level_applies_to_blobs_written_in_the_run(policy_path, tmp_path) -> None:
    text = policy_text().replace('password_env = "TEST_MAIN_PASSWORD"',
                                 'password_env = "TEST_MAIN_PASSWORD"\ncompression_level = 0')
    (tmp_path / "data" / "big1.jsonl").write_text('{"user": "ann", "text": "hello there"}\n' * 4000)
    result = run_file(policy_path, text, jobs=["files"])
    files = next(s for s in result.steps if s.job == "files" and s.step == "backup")
    # stored uncompressed: at least the bytes read (plus encryption overhead), though they are repetitive
    assert files.bytes_read == 50 * 35 + 27 + 4000 * 39 and files.bytes_added >= files.bytes_read
    with Repository.open(LocalStorage(tmp_path / "main"), PASSWORD) as repo:
        assert repo.config.compression_level == 3  # the stored config is unchanged
    (tmp_path / "data" / "big2.jsonl").write_text('{"user": "bob", "text": "hello again"}\n' * 4000)
    result = run_file(policy_path, policy_text(), jobs=["files"])
    files = next(s for s in result.steps if s.job == "files" and s.step == "backup")
    assert files.bytes_read == 4000 * 39 and files.bytes_added < files.bytes_read / 10


def test_sigterm_ends_the_run_cleanly(policy_path, tmp_path) -> None:
    import signal
    import time
    policy_path.write_text(policy_text('\n[sources.slow]\ncommand = ["sh", "-c", "echo started; sleep 60"]\n'))
    proc = subprocess.Popen([*strongroom_command(), "run", "--config", str(policy_path), "slow"],
                            env=dict(os.environ, TEST_MAIN_PASSWORD=PASSWORD.decode()), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "main" / "locks").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the backup holds its lock: it is running
        os.killpg(proc.pid, signal.SIGTERM)  # as systemd stops a service: the whole group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, err.strip()) == (130, "strongroom: interrupted")  # click adds a blank line
    assert list((tmp_path / "main" / "locks").iterdir()) == []  # released on the way out
    assert snapshots(tmp_path / "main", PASSWORD) == []


def test_write_only_key_backs_up_and_skips_the_rest(policy_path, tmp_path, monkeypatch) -> None:
    from strongroom.commands.keys import add_key
    with Repository.open(LocalStorage(tmp_path / "main"), PASSWORD) as repo:
        add_key(repo, b"writer password", WEAK_KDF, write_only=True)
    monkeypatch.setenv("TEST_MAIN_PASSWORD", "writer password")
    result = run_file(policy_path, policy_text())
    assert outline(result) == [("files", "open", "main", "ok", 0), ("files", "backup", "main", "ok", 0),
                               ("db", "backup", "main", "ok", 0), ("main", "forget", "main", "skipped", 0),
                               ("main", "copy", "offsite", "skipped", 0)]
    assert result.exit_code == 0 and len(snapshots(tmp_path / "main", PASSWORD)) == 2


def test_check_of_an_s3_repository_reads_the_bucket_not_the_cache(s3_server, s3_bucket, tmp_path,
                                                                  monkeypatch) -> None:
    from strongroom.storage import open_storage
    url = s3_server.url(s3_bucket, "repo")
    Repository.init(open_storage(url), PASSWORD, kdf=WEAK_KDF).close()
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello\n" * 100)
    path = tmp_path / "strongroom.toml"
    text = f'[repositories.s3]\nlocation = "{url}"\n[sources.chat]\npaths = ["data"]\n[check]\n'
    first = run_file(path, text)
    assert [(s.step, s.status) for s in first.steps] == [("open", "ok"), ("backup", "ok"), ("check", "ok")]
    storage = open_storage(url)
    [(name, _)] = storage.list("snapshots")
    storage.store(name, storage.load(name)[:-1])  # a size change: see test_s3's check test
    second = run_file(path, text)
    assert [(s.step, s.status) for s in second.steps] == [("open", "ok"), ("backup", "ok"), ("check", "failed")]
    assert second.steps[2].message.startswith("1 error(s), first: ") and name.split("/")[1][:16] in \
        second.steps[2].message
    assert second.repositories["s3"].check_errors == 1 and second.exit_code == 1
