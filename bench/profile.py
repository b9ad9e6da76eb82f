"""Where strongroom spends its time: profile one night's backup and one restore.

Works on the work dir a ``bench/run.py`` run left behind (its corpus, strongroom repository,
cache and source copy): the repository and cache are copied, the last night is rewritten in
place (fresh mtimes, same bytes), and then, in child processes,

- ``backup`` of that night, ``restore latest`` and (when it exists) ``check --read-data`` run
  under cProfile (main thread; the
  compress/encrypt workers show up there only as waiting), printing the top functions by own
  time and by cumulative time;
- the same backup and restore run under ``py-spy record --threads`` when py-spy is installed,
  which samples every thread (raw collapsed stacks, summarised by leaf function).

    python bench/profile.py --workdir /tmp/srbench-att60 [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pstats
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, run_step  # noqa: E402


def top(prof: Path, n: int) -> str:
    out = []
    for key in ("tottime", "cumulative"):
        stats = pstats.Stats(str(prof))
        total = stats.total_tt
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2 if key == "tottime" else 3], reverse=True)[:n]
        out.append(f"  by {key} (total {total:.2f} s of main-thread time):")
        for (file, line, func), (_, ncalls, tt, ct, _) in rows:
            where = f"{Path(file).name}:{line}" if line else file
            out.append(f"    {tt:7.2f} {ct:7.2f} {ncalls:>9}  {func}  ({where})")
    return "\n".join(out)


def spy_summary(raw: Path, n: int) -> str:
    """Collapsed stacks → samples per leaf function and per thread (py-spy --format raw)."""
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        total += int(count)
        leaf[frames[-1].split(" (")[0] + ""] += int(count)
    lines = [f"  {total} samples over all threads; top leaf functions:"]
    lines += [f"    {c / total:6.1%}  {name}" for name, c in leaf.most_common(n)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/srbench")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    meta = json.loads((work / "results.json").read_text())
    src = work / "strongroom-src"
    sys.path.insert(0, str(src))
    from corpus import params_for, write_night

    prof = work / "profile"
    shutil.rmtree(prof, ignore_errors=True)
    prof.mkdir()
    repo, cache = prof / "repo", prof / "cache"
    shutil.copytree(work / "repos" / "strongroom", repo)
    shutil.copytree(work / "cache" / "strongroom", cache)
    export = work / "export"
    args = meta["args"]
    params = params_for(args["profile"], args["scale"], args["seed"])
    env = dict(os.environ, STRONGROOM_REPO=str(repo), STRONGROOM_PASSWORD=PASSWORD,
               STRONGROOM_CACHE_DIR=str(cache), PYTHONPATH=str(src))
    py = [sys.executable]
    log = open(prof / "commands.log", "w")  # noqa: SIM115

    def stage(label, cmd, out):
        write_night(export, args["days"] - 1, params)  # fresh mtimes, same bytes
        s = run_step(cmd, env, log=log)
        print(f"{label}: {s.seconds:.2f} s wall, {s.cpu:.2f} s CPU, peak RSS {s.rss_mb:.0f} MB, rc {s.rc}")
        return out

    backup = ["-m", "strongroom", "backup", str(export), "--host", "bench"]
    p = stage("backup under cProfile", [*py, "-m", "cProfile", "-o", str(prof / "backup.prof"), *backup],
              prof / "backup.prof")
    print(top(p, a.top))
    target = prof / "restored"
    p = stage("restore under cProfile", [*py, "-m", "cProfile", "-o", str(prof / "restore.prof"), "-m", "strongroom",
                                         "restore", "latest", "--target", str(target)], prof / "restore.prof")
    print(top(p, a.top))
    shutil.rmtree(target, ignore_errors=True)
    helps = subprocess.run([*py, "-m", "strongroom", "check", "--help"], env=env, capture_output=True, text=True).stdout
    if "--read-data" in helps:
        p = stage("check --read-data under cProfile", [*py, "-m", "cProfile", "-o", str(prof / "check.prof"), "-m",
                                                       "strongroom", "check", "--read-data"], prof / "check.prof")
        print(top(p, a.top))
    spy = shutil.which("py-spy")
    if spy:
        raw = prof / "backup.spy.txt"
        stage("backup under py-spy (all threads)", [spy, "record", "--threads", "--format", "raw",
                                                    "--rate", "250", "-o", str(raw), "--", *py, *backup], raw)
        print(spy_summary(raw, a.top))
        raw = prof / "restore.spy.txt"
        stage("restore under py-spy (all threads)", [spy, "record", "--threads", "--format", "raw",
                                                     "--rate", "250", "-o", str(raw), "--", *py, "-m", "strongroom",
                                                     "restore", "latest", "--target", str(target)], raw)
        print(spy_summary(raw, a.top))
        shutil.rmtree(target, ignore_errors=True)
    else:
        print("py-spy not installed (pip install py-spy): no all-thread profile")
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
