"""Restore of the latest snapshot, repeated: strongroom sources side by side with restic.

Works on the work dir a ``bench/run.py`` run left behind (its strongroom and restic repositories
and caches). For each round, interleaved so that machine load hits all alike: each strongroom
source (a git revision or a directory holding ``strongroom/``) restores ``latest`` into a fresh
folder, then restic does, then each tool lists its snapshots (``snapshots``: start-up, key
derivation and opening the repository, the fixed cost every command pays). Every step is a
child process measured with ``wait4``; the first round is a warm-up and not counted. Each
restore is compared byte for byte with the export once.

    python bench/restore_ab.py --workdir /tmp/srbench --sources HEAD~3,src --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, run_step, source_label, source_snapshot, trees_equal  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/srbench", help="a bench/run.py work dir")
    ap.add_argument("--sources", default="HEAD", help="comma-separated git revisions or directories")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-restic", action="store_true")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    scratch = work / "restore-ab"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    export = work / "export"
    runs: dict[str, tuple[list[str], dict[str, str], Path]] = {}
    base_env = dict(os.environ)
    for i, source in enumerate(s for s in a.sources.split(",") if s):
        src = source_snapshot(scratch / f"src{i}", source)
        env = dict(base_env, STRONGROOM_REPO=str(work / "repos" / "strongroom"), STRONGROOM_PASSWORD=PASSWORD,
                   STRONGROOM_CACHE_DIR=str(work / "cache" / "strongroom"), PYTHONPATH=str(src))
        runs[f"strongroom {source_label(source)}"] = ([sys.executable, "-m", "strongroom"], env, scratch / f"out{i}")
    if not a.no_restic:
        env = dict(base_env, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(work / "repos" / "restic"))
        runs["restic"] = (["restic", "--quiet", "--cache-dir", str(work / "cache" / "restic")], env,
                          scratch / "out-restic")

    samples: dict[tuple[str, str], list] = {}
    for rnd in range(a.rounds + 1):
        for label, (cmd, env, out) in runs.items():
            shutil.rmtree(out, ignore_errors=True)
            step = run_step([*cmd, "restore", "latest", "--target", str(out)], env)
            if step.rc != 0:
                raise SystemExit(f"{label}: restore failed with exit code {step.rc}")
            if rnd == 0 and not trees_equal(export, out / str(export).lstrip("/")):
                raise SystemExit(f"{label}: the restored files differ from the export")
            if rnd:
                samples.setdefault((label, "restore"), []).append(step)
        for label, (cmd, env, _) in runs.items():
            step = run_step([*cmd, "snapshots"], env)
            if rnd:
                samples.setdefault((label, "snapshots"), []).append(step)
        print(f"round {rnd} done", file=sys.stderr, flush=True)

    print(f"`python bench/restore_ab.py --workdir {a.workdir} --sources {a.sources} --rounds {a.rounds}`\n")
    print("| tool | step | CPU min / median (s) | wall min / median (s) | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for (label, what), steps in samples.items():
        cpu = [s.cpu for s in steps]
        wall = [s.seconds for s in steps]
        print(f"| {label} | {what} | {min(cpu):.2f} / {statistics.median(cpu):.2f} | "
              f"{min(wall):.2f} / {statistics.median(wall):.2f} | {max(s.rss_mb for s in steps):.0f} |")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
