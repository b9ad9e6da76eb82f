"""Grouped blobs (spec §24): repository size and backup CPU of several init settings, side by
side with restic, night after night on one corpus (bench/corpus.py).

Only backups are run (no restore, check or prune: bench/run.py does those), so several settings
fit in one run. Each VARIANT is ``name=init arguments``, e.g.
``g4k=--text-chunks 1K:4K:16K --group-size 64K``; ``restic`` is added unless ``--no-restic``.

    python bench/groups.py --days 6 --scale 10 --profile text-heavy --workdir /tmp/groups-text6 \\
        --variant "base=--group-size 0" --variant "g4k=--text-chunks 1K:4K:16K"

CPU is the children's user + system time (wait4), which a loaded machine inflates far less than
wall time. Every strongroom backup runs with ``--no-catalog`` unless ``--catalog`` is given, to
isolate the engine from the message catalogue.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import params_for, write_night  # noqa: E402
from run import PASSWORD, dir_bytes, run_step, source_snapshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--profile", choices=("attachment-heavy", "text-heavy"), default="text-heavy")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/srgroups")
    ap.add_argument("--strongroom-src", default="src")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=INIT ARGS")
    ap.add_argument("--no-restic", action="store_true")
    ap.add_argument("--catalog", action="store_true", help="back up with the message catalogue")
    a = ap.parse_args(argv)
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = source_snapshot(work, a.strongroom_src)
    export = work / "export"
    variants = dict(v.split("=", 1) for v in a.variant)
    tools: dict[str, tuple[list[str], dict, list[str]]] = {}
    for name, init_args in variants.items():
        env = dict(os.environ, STRONGROOM_REPO=str(work / name / "repo"), STRONGROOM_PASSWORD=PASSWORD,
                   STRONGROOM_CACHE_DIR=str(work / name / "cache"), PYTHONPATH=str(src))
        cmd = [sys.executable, "-m", "strongroom"]
        step = run_step([*cmd, "init", "--kdf-memory", "8192", "--kdf-iterations", "1", *shlex.split(init_args)], env)
        if step.rc:
            raise SystemExit(f"init of {name} failed")
        tools[name] = (cmd, env, [] if a.catalog else ["--no-catalog"])
    if not a.no_restic:
        env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(work / "restic" / "repo"))
        cmd = ["restic", "--quiet", "--cache-dir", str(work / "restic" / "cache")]
        run_step([*cmd, "init", "--repository-version", "2"], env)
        tools["restic"] = (cmd, env, [])
    params = params_for(a.profile, a.scale, a.seed)
    results = {name: {"sizes": [], "cpu": [], "seconds": []} for name in tools}
    for day in range(a.days):
        night = write_night(export, day, params)
        print(f"night {day}: {night.bytes / 1e6:.1f} MB", flush=True)
        for name, (cmd, env, extra) in tools.items():
            step = run_step([*cmd, "backup", str(export), "--host", "bench", *extra], env)
            if step.rc:
                raise SystemExit(f"backup of {name} failed on night {day}")
            size = dir_bytes(work / name / "repo")
            r = results[name]
            r["sizes"].append(size)
            r["cpu"].append(step.cpu)
            r["seconds"].append(step.seconds)
            print(f"  {name:12} {size / 1e6:8.2f} MB  cpu {step.cpu:6.1f} s", flush=True)
    restic = results.get("restic")
    print(f"\n{a.profile}, {a.days} nights, scale {a.scale}:")
    print(f"{'variant':12} {'size MB':>9} {'× restic':>9} {'backup CPU s':>13}  init arguments")
    for name, r in results.items():
        ratio = r["sizes"][-1] / restic["sizes"][-1] if restic else float("nan")
        print(f"{name:12} {r['sizes'][-1] / 1e6:9.2f} {ratio:9.3f} {sum(r['cpu']):13.1f}  {variants.get(name, '')}")
    (work / "results.json").write_text(json.dumps({"variants": variants, "results": results, "days": a.days,
                                                   "scale": a.scale, "profile": a.profile}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
