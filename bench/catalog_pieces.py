"""Where a night's message catalogue spends its time, without the rest of the backup (CPU time).

    PYTHONPATH=src python bench/catalog_pieces.py build --work W --nights 3 --scale 10
        Once per work folder: backs up nights 0 .. NIGHTS-1 of the text-heavy corpus with the
        catalogue, then night NIGHTS without it. Then, ROUNDS times on a fresh copy of that
        repository and cache, builds night NIGHTS's catalogue as a backup would (reusing parts,
        the previous night's memos, the export files read from their source) and prints its CPU
        time, the pieces parsed and reused, and the catalogue's root (the same every round).
        With --all-hit, the rounds after the first build the same catalogue again with every
        piece in the memo and no part reused: the per-message floor.

    PYTHONPATH=src python bench/catalog_pieces.py feed --work W
        Every piece of the night's export files through its segment reader (and the record
        encoding), no memo: microseconds a piece per platform, min of ROUNDS.

Timings on a shared machine vary by ±20 %; for changes smaller than that, count instructions
instead: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/catalog_pieces.py
build --work W --rounds 1`` minus the same with ``--rounds 0`` (LMDB's default map cannot be
mapped under valgrind; --small-map maps 2 GiB).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strongroom.commands.backup import BackupOptions, run_backup  # noqa: E402
from strongroom.crypto.keyfile import KdfParams  # noqa: E402
from strongroom.repository import Repository  # noqa: E402
from strongroom.storage import LocalStorage  # noqa: E402

KDF = KdfParams(memory_kib=64, iterations=1, lanes=1)
PASSWORD = b"bench"


def prepare(setup: Path, nights: int, scale: float) -> None:
    if (setup / "tree").exists():
        return
    from corpus import params_for, write_night
    shutil.rmtree(setup, ignore_errors=True)
    setup.mkdir(parents=True)
    params = params_for("text-heavy", scale)
    with Repository.init(LocalStorage(str(setup / "repo")), PASSWORD, kdf=KDF,
                         cache_root=str(setup / "cache")) as repo:
        for night in range(nights + 1):
            write_night(setup / "exports", night, params)
            result = run_backup(repo, BackupOptions(paths=[str(setup / "exports")], catalog=night < nights))
    (setup / "tree").write_text(result.snapshot.tree)


def build(setup: Path, rounds: int, all_hit: bool) -> None:
    from strongroom.messages.catalog_build import build_catalog
    from strongroom.messages.catalog_index import MessageIndex
    from strongroom.writer import BlobWriter
    tree = bytes.fromhex((setup / "tree").read_text())
    work = setup.with_name(setup.name + "-round")
    times = []
    for r in range(rounds):
        if r == 0 or not all_hit:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(setup, work, ignore=shutil.ignore_patterns("exports"))
        with Repository.open(LocalStorage(str(work / "repo")), PASSWORD, cache_root=str(work / "cache")) as repo, \
                MessageIndex(repo) as index, BlobWriter(repo) as writer:
            reuse = index.part_nodes if r == 0 or not all_hit else None
            cpu = time.process_time()
            root, stats = build_catalog(repo, writer, tree, reuse=reuse, memos=index.memos, read_sources=True)
            writer.flush()
            index.memos.flush()
            times.append(time.process_time() - cpu)
        print(f"round {r}: {times[-1]:.3f} s CPU; messages {stats.messages}, pieces parsed {stats.pieces_parsed}, "
              f"reused {stats.pieces_reused}, files read {stats.files_read} ({stats.sources_read} from their "
              f"source); root {root.hex()[:16] if root else None}", flush=True)
    if times:
        rest = times[1:] if all_hit and len(times) > 1 else times
        print(f"min {min(rest):.3f} s CPU" + (" (every piece in the memo)" if all_hit and len(times) > 1 else ""))


def feed(setup: Path, rounds: int) -> None:
    from strongroom.messages.catalog_format import encode_record
    from strongroom.messages.catalog_memo import pieces
    from strongroom.messages.formats import find_exports
    from strongroom.messages.formats.common import log_warning
    from strongroom.messages.formats.files import LocalExportFiles
    files = LocalExportFiles(str(setup / "exports"))
    work = []
    for reader, export in find_exports(files):
        make = getattr(reader, "segment_reader", None)
        for path in export.files if make is not None else ():
            segments = make(files, export, path, log_warning)
            if segments is not None:
                with files.open(path) as f:
                    work.append((reader.platform, segments, list(pieces(iter(lambda: f.read(1 << 20), b"")))))
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    counts: dict[str, int] = defaultdict(int)
    for platform, _, cut in work:
        counts[platform] += len(cut)
    for _ in range(rounds):
        spent: dict[str, float] = defaultdict(float)
        for platform, segments, cut in work:
            cpu = time.process_time()
            state = segments.initial()
            for piece, final in cut:
                messages, state = segments.feed(state, piece, final, log_warning)
                for m in messages:
                    encode_record(m)
            spent[platform] += time.process_time() - cpu
        for platform, seconds in spent.items():
            best[platform] = min(best[platform], seconds)
    for platform in sorted(best):
        print(f"{platform:12s} {counts[platform]:7d} pieces {best[platform] * 1e6 / counts[platform]:7.1f} µs a piece "
              f"{best[platform]:7.3f} s")
    print(f"all {sum(best.values()):.3f} s CPU (min of {rounds} per platform)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("build", "feed"))
    ap.add_argument("--work", required=True, help="work folder, kept between runs (the corpus is made once)")
    ap.add_argument("--nights", type=int, default=3)
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--all-hit", action="store_true")
    ap.add_argument("--small-map", action="store_true", help="map LMDB with 2 GiB (for valgrind)")
    a = ap.parse_args(argv)
    if a.small_map:
        import lmdb
        open_env = lmdb.open
        lmdb.open = lambda path, **kw: open_env(path, **{**kw, "map_size": 1 << 31})
    setup = Path(a.work)
    prepare(setup, a.nights, a.scale)
    if a.step == "build":
        build(setup, a.rounds, a.all_hit)
    else:
        feed(setup, a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
