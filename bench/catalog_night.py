"""One night's backup with and without the message catalogue, on a repository that holds the
nights before it (CPU time, in process; run it under valgrind to count instructions).

    PYTHONPATH=src python bench/catalog_night.py --work W --profile attachment-heavy --nights 5 --scale 10 plain catalogue

The first run backs nights 0 .. NIGHTS-1 up into W/base (with the catalogue, as the default
backup does) and writes night NIGHTS's export; every step (``plain``, ``catalogue``) then backs
that night up on a fresh copy of W/base and prints its CPU time (this process's, and its forked
catalogue process's) and wall time. ``--small-map`` maps LMDB with
2 GiB, which valgrind can map: the catalogue's share in instructions is

    PYTHONMALLOC=malloc valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/catalog_night.py --work W ... --small-map catalogue     (minus the same with plain)
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strongroom.commands.backup import BackupOptions, run_backup  # noqa: E402
from strongroom.crypto.keyfile import KdfParams  # noqa: E402
from strongroom.repository import Repository  # noqa: E402
from strongroom.storage import LocalStorage  # noqa: E402

PASSWORD = b"bench"


def prepare(base: Path, profile: str, nights: int, scale: float) -> None:
    if (base / "ready").exists():
        return
    from corpus import params_for, write_night
    shutil.rmtree(base, ignore_errors=True)
    params = params_for(profile, scale)
    with Repository.init(LocalStorage(str(base / "repo")), PASSWORD, kdf=KdfParams(64, 1, 1),
                         cache_root=str(base / "cache")) as repo:
        for night in range(nights):
            write_night(base / "exports", night, params)
            run_backup(repo, BackupOptions(paths=[str(base / "exports")]))
    write_night(base / "exports", nights, params)
    (base / "ready").write_text("")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("steps", nargs="*", help="plain, catalogue (none: only prepare)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--profile", choices=("text-heavy", "attachment-heavy"), default="attachment-heavy")
    ap.add_argument("--nights", type=int, default=5, help="nights already in the repository")
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--small-map", action="store_true", help="map LMDB with 2 GiB (for valgrind)")
    a = ap.parse_args(argv)
    if set(a.steps) - {"plain", "catalogue"}:
        ap.error("steps are plain and catalogue")
    if a.small_map:
        import lmdb
        open_env = lmdb.open
        lmdb.open = lambda path, **kw: open_env(path, **{**kw, "map_size": 1 << 31})
    work = Path(a.work)
    prepare(work / "base", a.profile, a.nights, a.scale)
    for step in a.steps:
        shutil.rmtree(work / "round", ignore_errors=True)
        shutil.copytree(work / "base", work / "round", ignore=shutil.ignore_patterns("exports"))
        with Repository.open(LocalStorage(str(work / "round" / "repo")), PASSWORD,
                             cache_root=str(work / "round" / "cache")) as repo:
            cpu, children, wall = time.process_time(), _children_cpu(), time.perf_counter()
            run_backup(repo, BackupOptions(paths=[str(work / "base" / "exports")], catalog=step == "catalogue"))
            wall = time.perf_counter() - wall
            print(f"{step}: {time.process_time() - cpu:.2f} s CPU (+ {_children_cpu() - children:.2f} s in "
                  f"forked processes), {wall:.2f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
