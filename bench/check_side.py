"""`check --read-data` side by side with restic on the repositories a ``bench/run.py`` run left.

Both tools check their own repository of the same corpus (the state the run left: after its
forget+prune), alternately, ``--rounds`` times, so that machine load hits both alike. Every
check is a child process; CPU time (user + system) and wall time come from ``os.wait4``. The
table shows the minimum and the median of each, and strongroom ÷ restic of both.

    python bench/check_side.py --workdir /tmp/r3-verify --strongroom-src src --rounds 5

``--strongroom-src`` is a git revision of this checkout or a directory holding ``strongroom/``
(copied first, as bench/run.py does); several can be given, comma-separated, for an A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, run_step, source_label, source_snapshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="a bench/run.py work dir with strongroom and restic")
    ap.add_argument("--strongroom-src", default="src", help="comma-separated revisions or directories")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the samples as one JSON document too")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    sources = [s.strip() for s in a.strongroom_src.split(",") if s.strip()]
    runners: dict[str, tuple[list[str], dict[str, str]]] = {}
    for i, source in enumerate(sources):
        shutil.rmtree(work / f"check-side-{i}", ignore_errors=True)
        copy = source_snapshot(work / f"check-side-{i}", source)
        env = dict(os.environ, STRONGROOM_REPO=str(work / "repos" / "strongroom"), STRONGROOM_PASSWORD=PASSWORD,
                   STRONGROOM_CACHE_DIR=str(work / "cache" / "strongroom"), PYTHONPATH=str(copy))
        runners[f"strongroom {source_label(source)}"] = ([sys.executable, "-m", "strongroom", "check", "--read-data"],
                                                         env)
    runners["restic"] = (["restic", "--quiet", "--cache-dir", str(work / "cache" / "restic"), "check", "--read-data"],
                         dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(work / "repos" / "restic")))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    with open(work / "check-side.log", "w") as log:
        for _ in range(a.rounds):
            for name, (cmd, env) in runners.items():
                step = run_step(cmd, env, log=log)
                if step.rc != 0:
                    print(f"{name}: exited {step.rc} (see {work / 'check-side.log'})", file=sys.stderr)
                    return 1
                samples[name].append((step.cpu, step.seconds))
    base_cpu = min(c for c, _ in samples["restic"])
    base_wall = min(w for _, w in samples["restic"])
    print(f"{a.rounds} rounds on {work}; min (median) of each")
    print("| tool | CPU s | wall s | CPU ÷ restic | wall ÷ restic |\n| --- | --- | --- | --- | --- |")
    for name, rows in samples.items():
        cpus, walls = [c for c, _ in rows], [w for _, w in rows]
        print(f"| {name} | {min(cpus):.2f} ({statistics.median(cpus):.2f}) | {min(walls):.2f} "
              f"({statistics.median(walls):.2f}) | {min(cpus) / base_cpu:.2f} | {min(walls) / base_wall:.2f} |")
    if a.json:
        print(json.dumps(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
