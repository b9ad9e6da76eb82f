"""What `run` remembers between runs, in one small JSON file on the machine that runs it:

- when each repository was last pruned (by repository id, so moving a repository keeps it), for
  the prune cadence;
- when each job last succeeded, and its figures then, so the metrics file still shows the last
  success after a failed run.

Kept locally rather than in the repository: reading it needs no password or network, and a
lost or unreadable file is harmless (prune runs at the next run, an early prune is only work;
the last-success metric restarts). It is replaced atomically (temporary file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

STATE_FILE = "run-state.json"


def default_state_dir() -> str:
    explicit = os.environ.get("STRONGROOM_STATE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "strongroom")


@dataclass
class RunState:
    path: str
    last_prune: dict[str, float] = field(default_factory=dict)  # repository id -> unix time
    last_success: dict[str, float] = field(default_factory=dict)  # job name -> unix time
    problems: list[str] = field(default_factory=list)  # why the file could not be read, if so

    @classmethod
    def load(cls, folder: str) -> RunState:
        state = cls(os.path.join(folder, STATE_FILE))
        try:
            with open(state.path, encoding="utf-8") as f:
                doc = json.load(f)
            state.last_prune = {str(k): float(v) for k, v in doc.get("last_prune", {}).items()}
            state.last_success = {str(k): float(v) for k, v in doc.get("last_success", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError) as e:
            state.problems.append(f"ignoring unreadable state file {state.path}: {e}")
        return state

    def save(self) -> None:
        folder = os.path.dirname(self.path)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        doc = {"version": 1, "last_prune": self.last_prune, "last_success": self.last_success}
        write_atomically(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def write_atomically(path: str, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to a temporary file beside ``path``, sync it, and rename it over ``path``:
    readers (a metrics collector, the next run) see the old file or the new one, never a torn one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
