"""Unchanged re-backup of many small files (the metadata skip), strongroom against restic.

Creates ``--files`` small files (100 k by default; 200-4000 bytes of chat-like text each, 100 per
directory), backs them up once with each tool, then backs the unchanged tree up again and reports
wall and CPU time and peak RSS of that second backup (and, for reference, of the first). Each
step is a CLI child process; each tool has its own repository and cache.

    python bench/small_files.py --files 100000 --workdir /tmp/srbench-small
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, ensure_tools, run_step, source_label, source_snapshot  # noqa: E402

WORDS = ("hello", "deploy", "review", "lunch", "merged", "the", "build", "is", "green", "你好", "会议", "明天")


def make_tree(root: Path, files: int, seed: int) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        d = root / f"d{i // 100:05d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(40, 800))).encode()[:4000]
        (d / f"m{i:07d}.txt").write_bytes(text)
        total += len(text)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/srbench-small")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--strongroom-src", default="HEAD")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ensure_tools(["restic"])
    src = source_snapshot(work, a.strongroom_src)
    tree = work / "tree"
    size = make_tree(tree, a.files, a.seed)
    print(f"strongroom: {source_label(a.strongroom_src)}; {a.files:,} files, {size / 1e6:.1f} MB", flush=True)
    log = open(work / "commands.log", "a")  # noqa: SIM115
    tools = {
        "strongroom": (dict(os.environ, STRONGROOM_REPO=str(work / "sr-repo"), STRONGROOM_PASSWORD=PASSWORD,
                            STRONGROOM_CACHE_DIR=str(work / "sr-cache"), PYTHONPATH=str(src)),
                       [sys.executable, "-m", "strongroom"], ["init"], ["backup", str(tree), "--host", "bench"]),
        "restic": (dict(os.environ, RESTIC_REPOSITORY=str(work / "restic-repo"), RESTIC_PASSWORD=PASSWORD,
                        RESTIC_CACHE_DIR=str(work / "restic-cache")),
                   ["restic"], ["init", "--repository-version", "2"], ["backup", str(tree), "--host", "bench"]),
    }
    rows = {}
    for name, (env, cmd, init, backup) in tools.items():
        run_step([*cmd, *init], env, log=log)
        first = run_step([*cmd, *backup], env, log=log)
        second = run_step([*cmd, *backup], env, log=log)
        if first.rc or second.rc:
            raise SystemExit(f"{name} failed; see {work / 'commands.log'}")
        rows[name] = (first, second)
        print(f"{name:10} first {first.seconds:6.1f} s cpu {first.cpu:6.1f} s | unchanged {second.seconds:6.2f} s "
              f"cpu {second.cpu:6.2f} s rss {second.rss_mb:4.0f} MB", flush=True)
    s, r = rows["strongroom"][1], rows["restic"][1]
    print("\n| unchanged re-backup | strongroom | restic | strongroom/restic |\n| --- | --- | --- | --- |")
    print(f"| wall (s) | {s.seconds:.2f} | {r.seconds:.2f} | {s.seconds / r.seconds:.2f} |")
    print(f"| CPU (s) | {s.cpu:.2f} | {r.cpu:.2f} | {s.cpu / r.cpu:.2f} |")
    print(f"| peak RSS (MB) | {s.rss_mb:.0f} | {r.rss_mb:.0f} | {s.rss_mb / r.rss_mb:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
