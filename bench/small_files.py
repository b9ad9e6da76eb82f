"""Unchanged re-backup of many small files (issue 7: "faster than restic"), side by side.

A tree of N small files (default 100 000, 100 B – 4 KiB, in folders of 100) is backed up once by
each tool; then the same, untouched tree is backed up again ``--repeat`` times. That second backup
is pure metadata work: walk, stat, compare with the parent snapshot, write the (unchanged) trees.
Reports wall and CPU seconds (child user + system) of the first and of the median re-backup, peak
RSS, and the strongroom/restic and strongroom/borg ratios. Uses bench/run.py's tool drivers, so
the settings are the same as there.

    python bench/small_files.py [--files 100000] [--repeat 3] [--workdir DIR] [--tools ...]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import TOOLS, Borg, Restic, Step, Strongroom, ensure_tools, ratio, source_label, source_snapshot  # noqa: E402


def make_tree(root: Path, files: int, seed: int = 7) -> int:
    """``files`` files of 100 B to 4 KiB of text-like bytes, 100 per folder; returns total bytes."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(2000)]
    total = 0
    for i in range(files):
        folder = root / f"{i // 10000:02d}" / f"{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(100, 4096)
        text = b" ".join(rng.choices(words, k=size // 5 + 1))[:size]
        (folder / f"note-{i:06d}.md").write_bytes(text)
        total += size
    return total


def median_step(steps: list[Step]) -> Step:
    return sorted(steps, key=lambda s: s.cpu)[len(steps) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="unchanged re-backups per tool (median reported)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    ap.add_argument("--strongroom-src", default="HEAD",
                    help="git revision of this checkout, or a directory holding strongroom/ (e.g. src)")
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="srbench-small-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ensure_tools(args.tools)
    tree = work / "notes"
    total = make_tree(tree, args.files)
    print(f"{args.files} files, {total / 1e6:.1f} MB in {tree}; strongroom: {source_label(args.strongroom_src)}")

    log = open(work / "log.txt", "w")
    src = source_snapshot(work, args.strongroom_src)
    drivers = {"strongroom": lambda: Strongroom(work, log, src), "restic": lambda: Restic(work, log),
               "borg": lambda: Borg(work, log)}
    rows: dict[str, tuple[Step, Step]] = {}
    for name in args.tools:
        tool = drivers[name]()
        tool.init()
        first = tool.backup(tree, 0)
        again = median_step([tool.backup(tree, day) for day in range(1, args.repeat + 1)])
        if first.rc or again.rc:
            print(f"{name}: a backup failed (exit {first.rc or again.rc}); see {work / 'log.txt'}")
        rows[name] = (first, again)

    print()
    print("| tool | first backup wall / CPU s | unchanged re-backup wall / CPU s | re-backup peak RSS MB |")
    print("| --- | --- | --- | --- |")
    for name, (first, again) in rows.items():
        print(f"| {name} | {first.seconds:.2f} / {first.cpu:.2f} | {again.seconds:.2f} / {again.cpu:.2f} "
              f"| {again.rss_mb:.0f} |")
    if "strongroom" in rows:
        mine = rows["strongroom"][1]
        for other in ("restic", "borg"):
            if other in rows:
                theirs = rows[other][1]
                print(f"strongroom/{other} unchanged re-backup: wall {ratio(mine.seconds, theirs.seconds)}, "
                      f"CPU {ratio(mine.cpu, theirs.cpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
