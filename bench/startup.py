"""Fixed cost per command: CPU time (user + system) of short CLI commands, for one or more
strongroom sources side by side (a git revision or a directory holding ``strongroom/``).

Each source gets a compiled private copy (as bench/run.py makes) and its own repository with
the default key derivation; every command runs ``--rounds`` times, interleaved across sources.

    python bench/startup.py --sources e8d1131,src --rounds 10
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, source_label, source_snapshot  # noqa: E402

COMMANDS = (("--version",), ("backup", "--help"), ("snapshots",), ("backup", "{tiny}", "--no-catalog"))


def child_cpu(cmd: list[str], env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env=env, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default="HEAD,src", help="comma-separated revisions or directories")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--workdir", default="/tmp/srbench-startup")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    tiny = work / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "note.txt").write_text("hello\n")
    envs = {}
    for i, source in enumerate(a.sources.split(",")):
        src = source_snapshot(work / f"s{i}", source)
        envs[source] = dict(os.environ, PYTHONPATH=str(src), STRONGROOM_REPO=str(work / f"s{i}" / "repo"),
                            STRONGROOM_PASSWORD=PASSWORD, STRONGROOM_CACHE_DIR=str(work / f"s{i}" / "cache"))
        child_cpu([sys.executable, "-m", "strongroom", "init"], envs[source])
        print(f"{source}: {source_label(source)}", flush=True)
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(a.rounds):
        for command in COMMANDS:
            args = [part.format(tiny=tiny) for part in command]
            for source, env in envs.items():
                cpu.setdefault((source, " ".join(command)), []).append(
                    child_cpu([sys.executable, "-m", "strongroom", *args], env))
    print(f"\nCPU seconds of the command, min (median) of {a.rounds} runs")
    print("| command | " + " | ".join(envs) + " |\n| --- |" + " --- |" * len(envs))
    for command in COMMANDS:
        label = " ".join(command).replace("{tiny}", "DIR")
        cells = []
        for source in envs:
            values = sorted(cpu[(source, " ".join(command))])
            cells.append(f"{values[0]:.3f} ({values[len(values) // 2]:.3f})")
        print(f"| `strongroom {label}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
