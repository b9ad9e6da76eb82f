"""Fixed cost per command: CPU time (user + system) and wall time of short CLI commands, for one
or more strongroom sources side by side (a git revision or a directory holding ``strongroom/``),
and restic's for the same commands.

Each source gets a compiled private copy (as bench/run.py makes) and its own repository with
the default key derivation, holding one snapshot of a one-file folder; restic gets the same
(``--tools`` leaves it out). Every command runs ``--rounds`` times, interleaved across sources and
tools; the tables give min (median). The repository and password come from the environment, as
in a scheduled job.

    python bench/startup.py --sources e8d1131,src --rounds 10
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, source_label, source_snapshot  # noqa: E402

# (label, strongroom arguments, restic arguments); {tiny} is the one-file folder, {target} a
# fresh restore target for each run.
COMMANDS = (
    ("--version", ("--version",), ("version",)),
    ("backup --help", ("backup", "--help"), ("backup", "--help")),
    ("snapshots", ("snapshots",), ("snapshots",)),
    ("backup DIR", ("backup", "{tiny}", "--no-catalog"), ("backup", "{tiny}")),
    ("restore latest", ("restore", "latest", "--target", "{target}"), ("restore", "latest", "--target", "{target}")),
    ("check", ("check",), ("check",)),
)


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``cmd``: the child's own rusage from wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime, wall


def _cell(values: list[float]) -> str:
    values = sorted(values)
    return f"{values[0]:.3f} ({values[len(values) // 2]:.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="HEAD,src", help="comma-separated revisions or directories")
    ap.add_argument("--tools", default="strongroom,restic", help="strongroom, restic or both")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--workdir", default="/tmp/srbench-startup")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    tiny = work / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "note.txt").write_text("hello\n")
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}  # column -> (command prefix, environment)
    if "strongroom" in a.tools.split(","):
        for i, source in enumerate(a.sources.split(",")):
            src = source_snapshot(work / f"s{i}", source)
            env = dict(os.environ, PYTHONPATH=str(src), STRONGROOM_REPO=str(work / f"s{i}" / "repo"),
                       STRONGROOM_PASSWORD=PASSWORD, STRONGROOM_CACHE_DIR=str(work / f"s{i}" / "cache"))
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            commands[source] = ([sys.executable, "-m", "strongroom"], env)
            run_child(commands[source][0] + ["init"], env)
            print(f"{source}: {source_label(source)}", flush=True)
    if "restic" in a.tools.split(","):
        restic = shutil.which("restic")
        if restic is None:
            raise SystemExit("restic is not installed (apt-get install restic), or use --tools strongroom")
        env = dict(os.environ, RESTIC_REPOSITORY=str(work / "restic" / "repo"), RESTIC_PASSWORD=PASSWORD,
                   RESTIC_CACHE_DIR=str(work / "restic" / "cache"))
        commands["restic"] = ([restic, "--quiet"], env)
        run_child([restic, "init", "--repository-version", "2"], env)
        print("restic: " + subprocess.run([restic, "version"], capture_output=True, text=True).stdout.strip())
    for column, (prefix, env) in commands.items():  # one snapshot to list, restore and check
        args = COMMANDS[3][1] if column != "restic" else COMMANDS[3][2]
        run_child(prefix + [part.format(tiny=tiny) for part in args], env)
    runs = itertools.count()
    cpu: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    for _ in range(a.rounds):
        for label, ours, theirs in COMMANDS:
            for column, (prefix, env) in commands.items():
                target = work / "restores" / str(next(runs))
                args = [part.format(tiny=tiny, target=target) for part in (theirs if column == "restic" else ours)]
                c, w = run_child(prefix + args, env)
                cpu.setdefault((column, label), []).append(c)
                wall.setdefault((column, label), []).append(w)
                shutil.rmtree(target, ignore_errors=True)
    print(f"\nmin (median) of {a.rounds} runs, seconds; load average at the end: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for title, table in (("CPU (user + system)", cpu), ("wall", wall)):
        print(f"\n{title}\n\n| command | " + " | ".join(commands) + " |\n| --- |" + " --- |" * len(commands))
        for label, _, _ in COMMANDS:
            print(f"| `{label}` | " + " | ".join(_cell(table[(column, label)]) for column in commands) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
