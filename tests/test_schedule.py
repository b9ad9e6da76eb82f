"""`strongroom schedule`: show writes nothing; install writes exactly the documented systemd units
or cron file into the given folder and never runs systemctl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import strongroom_command
from strongroom.errors import UsageError
from strongroom.jobs.schedule import install_schedule, plan_schedule

POLICY = '[repositories.main]\nlocation = "repo"\n[sources.chat]\npaths = ["data"]\n'


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "etc" / "strongroom.toml"
    path.parent.mkdir()
    path.write_text(POLICY)
    return path


def schedule(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*strongroom_command(), "schedule", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


def service_text(policy: Path) -> str:
    return f"""\
[Unit]
Description=strongroom: back up, apply retention, verify and copy off-site ({policy})
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={sys.executable} -m strongroom run --config {policy}
# Backups yield to interactive work.
Nice=10
IOSchedulingClass=idle
"""


TIMER = """\
[Unit]
Description=Daily strongroom run at 02:30

[Timer]
OnCalendar=*-*-* 02:30:00
# Spread the start a little; catch up after the machine was off at that time.
RandomizedDelaySec=10min
Persistent=true

[Install]
WantedBy=timers.target
"""


def test_install_systemd_writes_exactly_the_units(tmp_path, policy) -> None:
    units = tmp_path / "units"
    out = schedule("install", "--config", str(policy), "--unit-dir", str(units), "--at", "02:30")
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(units)) == ["strongroom-run.service", "strongroom-run.timer"]
    assert (units / "strongroom-run.service").read_text() == service_text(policy)
    assert (units / "strongroom-run.timer").read_text() == TIMER
    assert oct((units / "strongroom-run.timer").stat().st_mode & 0o777) == "0o644"
    assert out.stdout == (f"wrote {units / 'strongroom-run.service'}\nwrote {units / 'strongroom-run.timer'}\n"
                          "enable it with:\n  systemctl daemon-reload\n  systemctl enable --now strongroom-run.timer\n")


def test_show_writes_nothing(tmp_path, policy) -> None:
    units = tmp_path / "units"
    out = schedule("show", "--config", str(policy), "--unit-dir", str(units), "--at", "02:30", "--user")
    assert out.returncode == 0, out.stderr
    assert not units.exists()
    assert out.stdout == (f"# {units / 'strongroom-run.service'}\n{service_text(policy)}\n"
                          f"# {units / 'strongroom-run.timer'}\n{TIMER}\n"
                          "# after `strongroom schedule install`, enable it with:\n"
                          "#   systemctl --user daemon-reload\n"
                          "#   systemctl --user enable --now strongroom-run.timer\n")
    doc = json.loads(schedule("show", "--config", str(policy), "--cron", "--user", "--json").stdout)
    assert doc == {"kind": "cron", "files": [], "enable": ["crontab -e  # and add the line above"],
                   "cron_line": f"0 3 * * * {sys.executable} -m strongroom run --config {policy}"}


def test_user_units_go_to_the_user_folder(tmp_path, policy) -> None:
    out = schedule("install", "--config", str(policy), "--user", "--name", "chat-backup",
                   env={"XDG_CONFIG_HOME": str(tmp_path / "home-config")})
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "home-config" / "systemd" / "user"
    assert sorted(os.listdir(folder)) == ["chat-backup.service", "chat-backup.timer"]
    assert "systemctl --user enable --now chat-backup.timer" in out.stdout


def test_install_cron_file(tmp_path, policy) -> None:
    out = schedule("install", "--config", str(policy), "--cron", "--unit-dir", str(tmp_path / "cron.d"),
                   "--at", "4:05")
    assert out.returncode == 0, out.stderr
    assert os.listdir(tmp_path / "cron.d") == ["strongroom-run"]
    assert (tmp_path / "cron.d" / "strongroom-run").read_text() == (
        "# strongroom: the daily run (written by `strongroom schedule install --cron`)\n"
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"5 4 * * * root {sys.executable} -m strongroom run --config {policy}\n")
    out = schedule("install", "--config", str(policy), "--cron", "--user")
    assert (out.returncode, out.stderr) == (2, "strongroom: a user crontab is not written by strongroom: add the "
                                               "line from `strongroom schedule show --cron --user` with "
                                               "`crontab -e`\n")


def test_awkward_paths_are_quoted(tmp_path) -> None:
    config = tmp_path / "my 100% config$.toml"
    plan = plan_schedule(str(config), unit_dir=str(tmp_path))
    service = plan.files[0][1]
    assert f'ExecStart={sys.executable} -m strongroom run --config "{tmp_path}/my 100%% config$$.toml"\n' in service
    cron = plan_schedule(str(config), kind="cron", unit_dir=str(tmp_path)).cron_line
    assert cron.endswith(f"--config '{tmp_path}/my 100\\% config$.toml'")


def test_bad_input_is_refused_before_writing(tmp_path, policy) -> None:
    with pytest.raises(UsageError, match="invalid time '25:00'"):
        plan_schedule(str(policy), at="25:00")
    with pytest.raises(UsageError, match="invalid schedule name"):
        plan_schedule(str(policy), name="../evil")
    policy.write_text(POLICY + "colour = 'red'\n")
    out = schedule("install", "--config", str(policy), "--unit-dir", str(tmp_path / "units"))
    assert out.returncode == 2 and "line 5: sources.chat.colour: unknown key" in out.stderr
    assert not (tmp_path / "units").exists()
    assert install_schedule(plan_schedule(str(policy), unit_dir=str(tmp_path / "u"))) == [
        str(tmp_path / "u" / "strongroom-run.service"), str(tmp_path / "u" / "strongroom-run.timer")]
