"""A/B of two strongroom sources on the same corpus: backup, restore and check CPU time.

For each source (a git revision or a directory holding ``strongroom/``), in turn and repeated
``--rounds`` times (interleaved, so machine load hits both alike): a fresh repository backs up
night ``N-1`` of the corpus, then night ``N`` (the "nightly full export" case: mostly the same
bytes, fresh mtimes), then ``restore latest`` and ``check --read-data``. Every step is a CLI child
process; the table shows the minimum (and median) CPU time (user + system) per step.

    python bench/ab.py --a HEAD --b src --night 5 --scale 60 --workdir /tmp/srbench-ab

``--backup-arg`` passes an option to both backups (e.g. ``--backup-arg=--no-catalog``);
``--backup-only`` skips restore and check.
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

from corpus import params_for, write_night  # noqa: E402
from run import PASSWORD, run_step, source_label, source_snapshot  # noqa: E402

STEPS = ("backup N-1", "backup N", "restore", "check --read-data")


def one_round(work: Path, src: Path, corpus: dict[int, Path], night: int, log, backup_args: list[str] = (),
              backup_only: bool = False) -> dict[str, tuple[float, float]]:
    repo, cache, target = work / "repo", work / "cache", work / "restore"
    for p in (repo, cache, target):
        shutil.rmtree(p, ignore_errors=True)
    env = dict(os.environ, STRONGROOM_REPO=str(repo), STRONGROOM_PASSWORD=PASSWORD,
               STRONGROOM_CACHE_DIR=str(cache), PYTHONPATH=str(src))
    cmd = [sys.executable, "-m", "strongroom"]
    export = work / "export"
    out = {}

    def step(label: str, *args: str) -> None:
        log.write(f"\n$ strongroom {' '.join(args)}\n")
        log.flush()
        s = run_step([*cmd, *args], env, log=log)
        if s.rc != 0:
            raise SystemExit(f"{label} failed (rc {s.rc}); see {log.name}")
        out[label] = (s.cpu, s.seconds)

    step("init", "init")
    for label, n in (("backup N-1", night - 1), ("backup N", night)):
        shutil.rmtree(export, ignore_errors=True)
        shutil.copytree(corpus[n], export)  # fresh mtimes, the night's bytes: as a nightly export job
        step(label, "backup", str(export), "--host", "bench", *backup_args)
    if backup_only:
        return out
    step("restore", "restore", "latest", "--target", str(target))
    step("check --read-data", "check", "--read-data")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default="HEAD", help="git revision or directory holding strongroom/")
    ap.add_argument("--b", default="src")
    ap.add_argument("--night", type=int, default=5)
    ap.add_argument("--scale", type=float, default=60.0)
    ap.add_argument("--profile", choices=("attachment-heavy", "text-heavy"), default="attachment-heavy")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/srbench-ab")
    ap.add_argument("--backup-arg", action="append", default=[], help="an extra option for both backups")
    ap.add_argument("--backup-only", action="store_true", help="skip restore and check")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sources = {}
    for key, source in (("a", a.a), ("b", a.b)):
        (work / key).mkdir()
        sources[key] = source_snapshot(work / key, source)
        print(f"{key}: {source_label(source)}", flush=True)
    params = params_for(a.profile, a.scale)
    corpus = {}
    for n in (a.night - 1, a.night):
        corpus[n] = work / f"night{n}"
        write_night(corpus[n], n, params)
    results: dict[str, list[dict]] = {"a": [], "b": []}
    with open(work / "commands.log", "a") as log:
        for r in range(a.rounds):
            for key in ("a", "b"):
                results[key].append(one_round(work / key, sources[key], corpus, a.night, log, a.backup_arg,
                                              a.backup_only))
                print(f"round {r + 1} {key}: " + ", ".join(f"{k} {v[0]:.2f}" for k, v in results[key][-1].items()),
                      flush=True)
    print(f"\nCPU seconds, min (median) of {a.rounds} rounds; {a.profile}, scale {a.scale}, night {a.night}"
          + (f"; backup {' '.join(a.backup_arg)}" if a.backup_arg else ""))
    print("| step | a | b | b/a |\n| --- | --- | --- | --- |")
    for label in ("init", *(STEPS[:2] if a.backup_only else STEPS)):
        cpu = {k: [r[label][0] for r in results[k]] for k in results}
        ma, mb = min(cpu["a"]), min(cpu["b"])
        print(f"| {label} | {ma:.2f} ({statistics.median(cpu['a']):.2f}) | {mb:.2f} ({statistics.median(cpu['b']):.2f})"
              f" | {mb / ma:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
