"""Alerts for `run`: a JSON payload per step, given to a command on its standard input (and as
STRONGROOM_* environment variables) and/or POSTed to a URL.

A notifier's own failure (it exits non-zero, times out, the server answers 500 or cannot be
reached) is returned as a message; the caller reports it as a warning and never lets it change
the outcome of the backup it was reporting on."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from strongroom import __version__

PASSWORD_VARIABLES = ("STRONGROOM_PASSWORD", "STRONGROOM_FROM_PASSWORD")
ENV_FIELDS = {"job": "STRONGROOM_JOB", "step": "STRONGROOM_STEP", "status": "STRONGROOM_STATUS",
              "exit_code": "STRONGROOM_EXIT_CODE", "snapshot": "STRONGROOM_SNAPSHOT",
              "bytes_added": "STRONGROOM_BYTES_ADDED", "duration_s": "STRONGROOM_DURATION",
              "message": "STRONGROOM_MESSAGE", "repository": "STRONGROOM_REPOSITORY"}


def wanted(on: str, status: str) -> bool:
    """Whether a step with ``status`` is notified under ``on`` (failure | success | always).
    A partial backup counts as a failure; skipped steps (prune not due) are never notified."""
    if status == "skipped":
        return False
    if on == "always":
        return True
    failed = status in ("failed", "partial")
    return failed if on == "failure" else not failed


def notify_command(command: list[str], payload: dict, timeout: float, hide_env: tuple[str, ...] = ()) -> str | None:
    """Run ``command`` with the payload as JSON on stdin; return why it failed, or None."""
    env = {k: v for k, v in os.environ.items() if k not in PASSWORD_VARIABLES and k not in hide_env}
    for key, name in ENV_FIELDS.items():
        value = payload.get(key)
        env[name] = "" if value is None else str(value)
    body = json.dumps(payload, sort_keys=True).encode()
    try:
        proc = subprocess.run(command, input=body, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"notify command {command[0]} did not finish within {timeout:g} s (killed)"
    except OSError as e:
        return f"cannot run notify command {command[0]}: {e.strerror}"
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        return (f"notify command {command[0]} exited with status {proc.returncode}"
                + (f": {detail[-1][:200]}" if detail else ""))
    return None


def notify_url(url: str, payload: dict, timeout: float) -> str | None:
    """POST the payload as JSON to ``url``; return why it failed, or None (any 2xx answer)."""
    request = urllib.request.Request(url, data=json.dumps(payload, sort_keys=True).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": f"strongroom/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(64 * 1024)
    except urllib.error.HTTPError as e:
        return f"notify URL {_redacted(url)} answered HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"notify URL {_redacted(url)} failed: {reason}"
    return None


def _redacted(url: str) -> str:
    """Scheme and host only: webhook URLs carry their secret token in the path or query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}/" + ("..." if parts.path.strip("/") or parts.query else "")
