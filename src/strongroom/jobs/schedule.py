"""Schedules for `strongroom run`: a systemd service + timer, or a cron line.

``plan_schedule`` only composes file contents; ``install_schedule`` writes them (never anything
else: it does not call systemctl or crontab, it returns the commands that enable the schedule,
so an install is predictable, testable, and reviewed before it takes effect)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field

from strongroom.errors import UsageError
from strongroom.jobs.state import write_atomically

SYSTEM_UNIT_DIR = "/etc/systemd/system"
CRON_DIR = "/etc/cron.d"
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def user_unit_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user")


@dataclass
class SchedulePlan:
    kind: str  # systemd | cron
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, content); empty for a user cron
    cron_line: str | None = None
    enable: list[str] = field(default_factory=list)  # commands for the admin to run afterwards

    def to_json(self) -> dict:
        return {"kind": self.kind, "files": [{"path": p, "content": c} for p, c in self.files],
                "cron_line": self.cron_line, "enable": self.enable}


def run_command(config: str) -> list[str]:
    """The command the schedule runs: this interpreter, so the schedule uses the installation
    that created it (a virtualenv included) whatever PATH the service manager gives."""
    return [sys.executable, "-m", "strongroom", "run", "--config", os.path.abspath(config)]


def plan_schedule(config: str, *, kind: str = "systemd", user: bool = False, unit_dir: str | None = None,
                  at: str = "03:00", name: str = "strongroom-run") -> SchedulePlan:
    m = _TIME.match(at)
    if not m:
        raise UsageError(f"invalid time {at!r}: use HH:MM (24-hour), e.g. 03:00")
    hour, minute = int(m.group(1)), int(m.group(2))
    if not _UNIT_NAME.match(name):
        raise UsageError(f"invalid schedule name {name!r}: letters, digits, '.', '_' and '-'")
    command = run_command(config)
    if kind == "cron":
        return _cron_plan(command, hour, minute, user=user, folder=unit_dir, name=name)
    folder = unit_dir or (user_unit_dir() if user else SYSTEM_UNIT_DIR)
    exec_start = " ".join(_systemd_quote(a) for a in command)
    service = (f"[Unit]\nDescription=strongroom: back up, apply retention, verify and copy off-site "
               f"({os.path.abspath(config).replace('%', '%%')})\n"
               "Wants=network-online.target\nAfter=network-online.target\n\n"
               "[Service]\nType=oneshot\n"
               f"ExecStart={exec_start}\n"
               "# Backups yield to interactive work.\nNice=10\nIOSchedulingClass=idle\n")
    timer = (f"[Unit]\nDescription=Daily strongroom run at {hour:02d}:{minute:02d}\n\n"
             f"[Timer]\nOnCalendar=*-*-* {hour:02d}:{minute:02d}:00\n"
             "# Spread the start a little; catch up after the machine was off at that time.\n"
             "RandomizedDelaySec=10min\nPersistent=true\n\n"
             "[Install]\nWantedBy=timers.target\n")
    systemctl = "systemctl --user" if user else "systemctl"
    return SchedulePlan("systemd", [(os.path.join(folder, f"{name}.service"), service),
                                    (os.path.join(folder, f"{name}.timer"), timer)],
                        enable=[f"{systemctl} daemon-reload", f"{systemctl} enable --now {name}.timer"])


def _cron_plan(command: list[str], hour: int, minute: int, *, user: bool, folder: str | None,
               name: str) -> SchedulePlan:
    # cron treats % as a newline unless escaped; the line runs under /bin/sh
    quoted = " ".join(shlex.quote(a) for a in command).replace("%", "\\%")
    if user:
        line = f"{minute} {hour} * * * {quoted}"
        return SchedulePlan("cron", cron_line=line, enable=["crontab -e  # and add the line above"])
    line = f"{minute} {hour} * * * root {quoted}"
    content = ("# strongroom: the daily run (written by `strongroom schedule install --cron`)\n"
               "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
               f"{line}\n")
    return SchedulePlan("cron", [(os.path.join(folder or CRON_DIR, name.replace(".", "-")), content)],
                        cron_line=line, enable=[])


def install_schedule(plan: SchedulePlan) -> list[str]:
    """Write the plan's files (atomically, 0644); return their paths."""
    if not plan.files:
        raise UsageError("a user crontab is not written by strongroom: add the line from "
                         "`strongroom schedule show --cron --user` with `crontab -e`")
    for path, content in plan.files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, content, mode=0o644)
    return [p for p, _ in plan.files]


def _systemd_escape(text: str) -> str:
    """systemd expands % specifiers and $ variables in unit settings."""
    return text.replace("%", "%%").replace("$", "$$")


def _systemd_quote(arg: str) -> str:
    arg = _systemd_escape(arg)
    if arg and not re.search(r'[\s"\'\\;]', arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
