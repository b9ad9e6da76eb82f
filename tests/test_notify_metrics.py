"""Alerts and metrics of `run`: the exact JSON payload a command and a real HTTP server receive,
notifier failures reported without changing the result, and the exact Prometheus text."""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from conftest import PASSWORD, WEAK_KDF
from strongroom.cli.operations import open_repository
from strongroom.commands.run import RunOptions, run_policy
from strongroom.jobs.notify import wanted
from strongroom.jobs.policyfile import NotifySpec, load_policy_file
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

NOW = 1_800_000_000.0


class Receiver:
    """A real HTTP server in a thread, answering every POST with ``status`` and keeping the bodies."""

    def __init__(self, status: int = 204) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def policy_path(tmp_path, monkeypatch) -> Path:
    Repository.init(LocalStorage(tmp_path / "main"), PASSWORD, kdf=WEAK_KDF).close()
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "messages.jsonl").write_text('{"text": "hi"}\n' * 100)
    path = tmp_path / "strongroom.toml"
    path.write_text(f"""\
[repositories.main]
location = "main"

[sources.chat]
paths = ["data"]

[sources.dump]
command = ["sh", "-c", "echo 'connection refused' >&2; exit 2"]

[run]
state_dir = "state"

[metrics]
file = "{tmp_path / 'metrics' / 'strongroom.prom'}"
""")
    (tmp_path / "metrics").mkdir()
    return path


def run(path: Path, notify: NotifySpec | None = None, clock=lambda: NOW):
    return run_policy(load_policy_file(str(path)), RunOptions(notify=notify), open_repository, clock=clock)


RECORDER = """import json, os, sys
payload = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("STRONGROOM_") and k != "STRONGROOM_CACHE_DIR"}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"payload": payload, "env": env}) + "\\n")
"""


def test_command_and_url_receive_the_failed_step(policy_path, tmp_path, receiver) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    import sys
    spec = NotifySpec(command=[sys.executable, str(tmp_path / "recorder.py"), str(tmp_path / "got.jsonl")],
                      url=receiver.url, on="failure", timeout=10)
    result = run(policy_path, spec)
    assert result.exit_code == 1 and result.warnings == [] and result.notifications_sent == 2
    failed = next(s for s in result.steps if s.job == "dump")
    expected = {"job": "dump", "step": "backup", "repository": "main", "status": "failed", "exit_code": 1,
                "message": "command sh exited with status 2: no snapshot written", "snapshot": None,
                "bytes_read": 0, "bytes_added": 0, "duration_s": failed.duration_s, "host": result.host,
                "config": str(policy_path), "time": "2027-01-15T08:00:00+00:00"}
    got = [json.loads(line) for line in (tmp_path / "got.jsonl").read_text().splitlines()]
    assert [g["payload"] for g in got] == [expected]
    assert got[0]["env"] == {"STRONGROOM_JOB": "dump", "STRONGROOM_STEP": "backup", "STRONGROOM_STATUS": "failed",
                             "STRONGROOM_EXIT_CODE": "1", "STRONGROOM_SNAPSHOT": "",
                             "STRONGROOM_BYTES_ADDED": "0", "STRONGROOM_DURATION": str(failed.duration_s),
                             "STRONGROOM_MESSAGE": "command sh exited with status 2: no snapshot written",
                             "STRONGROOM_REPOSITORY": "main"}  # and no STRONGROOM_PASSWORD
    assert receiver.received == [("/hooks/secret-token", "application/json", expected)]


def test_success_notifications(policy_path, receiver) -> None:
    result = run(policy_path, NotifySpec(url=receiver.url, on="success", timeout=10))
    ok = [(s.job, s.step) for s in result.steps if s.status == "ok"]
    assert ok == [("chat", "open"), ("chat", "backup")]
    assert [(p["job"], p["step"], p["status"]) for _, _, p in receiver.received] == [
        ("chat", "backup", "ok")]  # a successful open is not worth a message
    chat = receiver.received[0][2]
    assert chat["snapshot"] == result.steps[1].snapshot and chat["bytes_read"] == 1500
    assert [wanted(on, st) for on in ("failure", "success", "always") for st in ("ok", "partial", "skipped")] == [
        False, True, False, True, False, False, True, True, False]


def test_failing_notifiers_are_reported_and_change_nothing(policy_path, tmp_path) -> None:
    server_error = Receiver(status=500)
    try:
        spec = NotifySpec(command=["sh", "-c", "echo 'mail: no route' >&2; exit 7"], url=server_error.url,
                          on="always", timeout=10)
        result = run(policy_path, spec)
    finally:
        server_error.close()
    assert result.exit_code == 1  # the failed dump's, not the notifiers'
    assert result.notifications_sent == 0
    port = server_error.server.server_port
    assert result.warnings == [
        "notify command sh exited with status 7: mail: no route (about chat backup: ok)",
        f"notify URL http://127.0.0.1:{port}/... answered HTTP 500 (about chat backup: ok)",
        "notify command sh exited with status 7: mail: no route (about dump backup: failed)",
        f"notify URL http://127.0.0.1:{port}/... answered HTTP 500 (about dump backup: failed)",
    ]
    # nobody listening, a command that does not exist, a command that hangs
    spec = NotifySpec(command=[str(tmp_path / "no-such-notifier")], url=f"http://127.0.0.1:{port}/x",
                      on="failure", timeout=10)
    result = run(policy_path, spec)
    assert result.exit_code == 1 and len(result.warnings) == 2
    assert result.warnings[0] == (f"cannot run notify command {tmp_path / 'no-such-notifier'}: "
                                  f"No such file or directory (about dump backup: failed)")
    assert result.warnings[1].startswith(f"notify URL http://127.0.0.1:{port}/... failed: ")
    result = run(policy_path, NotifySpec(command=["sleep", "10"], on="failure", timeout=0.5))
    assert result.warnings == ["notify command sleep did not finish within 0.5 s (killed) "
                               "(about dump backup: failed)"]


def test_cli_notify_options_and_their_failure_on_stderr(policy_path, tmp_path) -> None:
    import subprocess
    from conftest import strongroom_command
    out = subprocess.run([*strongroom_command(), "run", "--config", str(policy_path), "--notify-command", "false",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "warning: notify command false exited with status 1 (about dump backup: failed)" in out.stderr
    assert json.loads(out.stdout)["warnings"] == ["notify command false exited with status 1 "
                                                  "(about dump backup: failed)"]


def normalised(text: str) -> str:
    return re.sub(r"(_duration_seconds(?:\{[^}]*\})?) [0-9.]+", r"\1 D", text)


def test_metrics_file_exact(policy_path, tmp_path) -> None:
    result = run(policy_path)
    metrics = tmp_path / "metrics" / "strongroom.prom"
    chat = result.steps[1]
    size = sum(f.stat().st_size for f in (tmp_path / "main" / "data").rglob("*") if f.is_file())
    assert os.listdir(tmp_path / "metrics") == ["strongroom.prom"]  # the temporary file was renamed
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"
    assert normalised(metrics.read_text()) == f"""\
# HELP strongroom_job_last_success_timestamp_seconds Unix time of the job's last successful backup.
# TYPE strongroom_job_last_success_timestamp_seconds gauge
strongroom_job_last_success_timestamp_seconds{{job="chat"}} 1800000000
# HELP strongroom_job_success 1 if the job's backup succeeded in the last run, 0 if it failed or was partial.
# TYPE strongroom_job_success gauge
strongroom_job_success{{job="chat",repository="main"}} 1
strongroom_job_success{{job="dump",repository="main"}} 0
# HELP strongroom_job_exit_code Exit code of the job's backup in the last run (0 ok, 3 partial).
# TYPE strongroom_job_exit_code gauge
strongroom_job_exit_code{{job="chat",repository="main"}} 0
strongroom_job_exit_code{{job="dump",repository="main"}} 1
# HELP strongroom_job_duration_seconds Duration of the job's backup in the last run.
# TYPE strongroom_job_duration_seconds gauge
strongroom_job_duration_seconds{{job="chat",repository="main"}} D
strongroom_job_duration_seconds{{job="dump",repository="main"}} D
# HELP strongroom_job_read_bytes Bytes the job's backup read in the last run.
# TYPE strongroom_job_read_bytes gauge
strongroom_job_read_bytes{{job="chat",repository="main"}} 1500
strongroom_job_read_bytes{{job="dump",repository="main"}} 0
# HELP strongroom_job_added_bytes Bytes the job's backup added to the repository in the last run (stored size).
# TYPE strongroom_job_added_bytes gauge
strongroom_job_added_bytes{{job="chat",repository="main"}} {chat.bytes_added}
strongroom_job_added_bytes{{job="dump",repository="main"}} 0
# HELP strongroom_repository_size_bytes Stored size of the repository's packs after the last run.
# TYPE strongroom_repository_size_bytes gauge
strongroom_repository_size_bytes{{repository="main"}} {size}
# HELP strongroom_repository_snapshots Snapshots in the repository after the last run.
# TYPE strongroom_repository_snapshots gauge
strongroom_repository_snapshots{{repository="main"}} 1
# HELP strongroom_step_duration_seconds Duration of each step of the last run.
# TYPE strongroom_step_duration_seconds gauge
strongroom_step_duration_seconds{{job="chat",step="open",repository="main"}} D
strongroom_step_duration_seconds{{job="chat",step="backup",repository="main"}} D
strongroom_step_duration_seconds{{job="dump",step="backup",repository="main"}} D
# HELP strongroom_step_exit_code Exit code of each step of the last run (0 ok or skipped).
# TYPE strongroom_step_exit_code gauge
strongroom_step_exit_code{{job="chat",step="open",repository="main"}} 0
strongroom_step_exit_code{{job="chat",step="backup",repository="main"}} 0
strongroom_step_exit_code{{job="dump",step="backup",repository="main"}} 1
# HELP strongroom_run_timestamp_seconds Unix time the last run started.
# TYPE strongroom_run_timestamp_seconds gauge
strongroom_run_timestamp_seconds 1800000000
# HELP strongroom_run_duration_seconds Duration of the last run.
# TYPE strongroom_run_duration_seconds gauge
strongroom_run_duration_seconds D
# HELP strongroom_run_exit_code Exit code of the last run (the worst step's).
# TYPE strongroom_run_exit_code gauge
strongroom_run_exit_code 1
"""
    assert chat.bytes_added > 0 and size > 0
    # a later failed run keeps the last success time; the whole run's success time appears once all pass
    (policy_path).write_text(policy_path.read_text().replace("exit 2", "exit 0"))
    run(policy_path, clock=lambda: NOW + 3600)
    text = metrics.read_text()
    assert 'strongroom_job_last_success_timestamp_seconds{job="dump"} 1800003600\n' in text
    assert "strongroom_run_last_success_timestamp_seconds 1800003600\n" in text
    (policy_path).write_text(policy_path.read_text().replace('paths = ["data"]', 'paths = ["gone"]'))
    run(policy_path, clock=lambda: NOW + 7200)
    text = metrics.read_text()
    assert 'strongroom_job_last_success_timestamp_seconds{job="chat"} 1800003600\n' in text
    assert 'strongroom_job_success{job="chat",repository="main"} 0\n' in text
    assert "strongroom_run_last_success_timestamp_seconds 1800003600\n" in text


def test_metric_labels_are_escaped() -> None:
    from strongroom.jobs.metrics import _labels
    assert _labels({"job": 'a"b\\c\nd'}) == '{job="a\\"b\\\\c\\nd"}'
