"""Message catalogue costs: backup overhead, and search over many large snapshots (CPU time).

    PYTHONPATH=src python bench/messages.py backup --nights 4 --scale 10
        Backs the same nightly corpus (bench/corpus.py, text-heavy unless --profile) up twice, into a repository
        with --no-catalog and one with the catalogue, and reports the process CPU time of each
        backup (all threads) and the ratio; the last night is backed up once more unchanged.
        Target: cataloguing costs at most 30%. With --cli, `strongroom backup` processes are
        timed instead (start-up and default key derivation included, as a user runs it).

    PYTHONPATH=src python bench/messages.py search --snapshots 30 --messages 1000000
        Builds SNAPSHOTS catalogued snapshots of a synthetic chat export (50 conversations, one
        file per conversation and day, 400 messages a file; every night adds a day, edits and
        deletes messages in 20 older files), starting with --messages messages and growing by 20 000 a
        night, then times indexing them into the cache, a rare-word and a common-word search
        over all snapshots, a one-snapshot search, a diff and stats. Target: a search in seconds.

CPU times come from time.process_time (this process, all threads); wall times are printed too
but are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "src"))

from strongroom.commands.backup import BackupOptions, run_backup  # noqa: E402
from strongroom.crypto.keyfile import KdfParams  # noqa: E402
from strongroom.messages import catalog_build  # noqa: E402
from strongroom.messages.catalog_index import MessageIndex  # noqa: E402
from strongroom.messages.catalog_query import Filters, diff, search, stats  # noqa: E402
from strongroom.messages.model import Export, Message  # noqa: E402
from strongroom.repository import Repository  # noqa: E402
from strongroom.storage import LocalStorage  # noqa: E402

KDF = KdfParams(memory_kib=64, iterations=1, lanes=1)
PASSWORD = b"bench"


class Clock:
    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), time.monotonic()

    def done(self) -> tuple[float, float]:
        return time.process_time() - self.cpu, time.monotonic() - self.wall


def _repo(path: Path) -> Repository:
    return Repository.init(LocalStorage(str(path)), PASSWORD, kdf=KDF)


# -- backup overhead -------------------------------------------------------------------------

def bench_backup(nights: int, scale: float, work: Path, profile: str = "text-heavy") -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from corpus import params_for, write_night
    params = params_for(profile, scale)
    src = work / "exports"
    rows = []
    seen: list = []  # the catalogue builder's statistics of each catalogued backup
    build = catalog_build.build_catalog

    def counting_build(*args, **kwargs):
        root, stats = build(*args, **kwargs)
        seen.append(stats)
        return root, stats

    catalog_build.build_catalog = counting_build
    with _repo(work / "plain") as plain, _repo(work / "catalogued") as catalogued:
        for night in list(range(nights)) + [nights - 1]:
            repeat = bool(rows) and night == rows[-1]["night"]
            if not repeat:  # the last night is backed up twice: the second time nothing changed
                stats_ = write_night(src, night, params)
            row = {"night": night, "bytes": stats_.bytes, "unchanged": repeat}
            for name, repo, catalog in (("plain", plain, False), ("catalogue", catalogued, True)):
                clock = Clock()
                result = run_backup(repo, BackupOptions(paths=[str(src)], catalog=catalog))
                row[name + "_cpu_s"], row[name + "_wall_s"] = (round(v, 2) for v in clock.done())
                if catalog:
                    assert result.snapshot.catalog, "the corpus has recognised exports"
            row["overhead"] = round(row["catalogue_cpu_s"] / row["plain_cpu_s"] - 1, 3)
            if seen:  # messages catalogued, and pieces (~ records) of changed files parsed vs reused
                row.update(messages=seen[-1].messages, pieces_parsed=seen[-1].pieces_parsed,
                           pieces_reused=seen[-1].pieces_reused, parts_reused=seen[-1].parts_reused)
                seen.clear()
            rows.append(row)
            print(json.dumps(row), flush=True)
    catalog_build.build_catalog = build
    total_plain = sum(r["plain_cpu_s"] for r in rows)
    total_cat = sum(r["catalogue_cpu_s"] for r in rows)
    return {"nights": rows, "plain_cpu_s": round(total_plain, 2), "catalogue_cpu_s": round(total_cat, 2),
            "overhead": round(total_cat / total_plain - 1, 3)}


def bench_backup_cli(nights: int, scale: float, work: Path, profile: str = "text-heavy") -> dict:
    """The same nights through the command a user runs (`strongroom backup`, default key
    derivation, a fresh process each time), with and without `--no-catalog`: the child's CPU
    time (user + system, from wait4) and wall time. This is what "slows a backup" means to a
    user; the in-process numbers above leave out the start-up and key derivation both pay."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from corpus import params_for, write_night
    from run import run_step
    params = params_for(profile, scale)
    src = work / "exports"
    env = dict(os.environ, STRONGROOM_PASSWORD="bench", PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))
    command = [sys.executable, "-m", "strongroom"]
    for name in ("plain", "catalogued"):
        subprocess.run([*command, "init", "-r", str(work / name)], env=env, check=True, capture_output=True)
    rows = []
    for night in range(nights):
        stats_ = write_night(src, night, params)
        row = {"night": night, "bytes": stats_.bytes}
        for name, extra in (("plain", ["--no-catalog"]), ("catalogue", [])):
            repo = work / ("plain" if extra else "catalogued")
            with open(work / "commands.log", "ab") as log:
                step = run_step([*command, "backup", "-r", str(repo), str(src), "--json", *extra], env, log=log)
            assert step.rc == 0, f"backup failed: see {work / 'commands.log'}"
            row[name + "_cpu_s"], row[name + "_wall_s"] = round(step.cpu, 2), round(step.seconds, 2)
        row["overhead_cpu"] = round(row["catalogue_cpu_s"] / row["plain_cpu_s"] - 1, 3)
        row["overhead_wall"] = round(row["catalogue_wall_s"] / row["plain_wall_s"] - 1, 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    later = rows[1:] or rows  # night 0 (everything new) aside
    cpu = sum(r["catalogue_cpu_s"] for r in later) / sum(r["plain_cpu_s"] for r in later) - 1
    wall = sum(r["catalogue_wall_s"] for r in later) / sum(r["plain_wall_s"] for r in later) - 1
    return {"nights": rows, "overhead_cpu_nights_1_on": round(cpu, 3), "overhead_wall_nights_1_on": round(wall, 3)}


# -- search at scale -------------------------------------------------------------------------

CONVERSATIONS = 50
PER_FILE = 400
WORDS = ("deploy release build cache login report meeting lunch review merge branch test flaky prod staging "
         "database migration rollback alert pager incident fix bug ticket sprint roadmap budget invoice "
         "customer ticket design mockup figma api endpoint latency timeout retry queue worker cron backup "
         "restore snapshot prune archive compliance audit legal hold export slack mattermost").split()
RARE = "zanzibar"  # one message in 5000 carries it


class SyntheticReader:
    """``<root>/c<NN>/d<DDD>.syn.json`` files holding "version N": 400 messages each, derived from the
    path and version (a version bump edits ~2% and deletes ~1% of the file's messages)."""

    platform = "synthetic"

    def find(self, files):
        paths = [p for p in files.paths() if p.endswith(".syn.json")]
        if not paths:
            return []
        root = paths[0].rsplit("/", 2)[0]  # <root>/cNN/dDDD.syn.json (a root may hold "/c" itself)
        return [Export(self.platform, root, tuple(paths))]

    def messages(self, files, export):
        for path in export.files:
            with files.open(path) as f:
                version = int(f.read().split()[1])
            conv, day = path.rsplit("/", 2)[-2:]
            day_n = int(day[1:4])
            seed = zlib.crc32(f"{conv}/{day_n}".encode())
            for i in range(PER_FILE):
                rnd = random.Random(seed * 1000 + i)
                edits = sum(1 for v in range(1, version + 1) if random.Random(seed ^ (v << 20) ^ i).random() < 0.02)
                if any(random.Random(seed ^ (v << 21) ^ i).random() < 0.01 for v in range(1, version + 1)):
                    continue
                words = [rnd.choice(WORDS) for _ in range(rnd.randint(4, 24))]
                if rnd.random() < 1 / 5000:
                    words.insert(rnd.randrange(len(words)), RARE)
                text = " ".join(words) + (f" (edit {edits})" if edits else "")
                yield Message(self.platform, conv, f"{conv}-{day_n}-{i}", f"user{rnd.randrange(300)}",
                              1_700_000_000_000 + day_n * 86_400_000 + i * 200_000, bool(edits), text,
                              f"{conv}/{day}")


def _write_night(src: Path, days: int, versions: dict) -> None:
    for c in range(CONVERSATIONS):
        for d in range(days):
            path = src / f"c{c:02d}" / f"d{d:03d}.syn.json"
            content = f"version {versions.get((c, d), 0)}\n"
            if not path.exists() or path.read_text() != content:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)


def bench_search(snapshots: int, messages: int, work: Path) -> dict:
    catalog_build.DEFAULT_READERS = [SyntheticReader()]
    src = work / "synthetic"
    days = messages // (CONVERSATIONS * PER_FILE)
    versions: dict = {}
    rnd = random.Random(7)
    out: dict = {"snapshots": snapshots, "first_messages": days * CONVERSATIONS * PER_FILE}
    built = (work / "repo" / "config").exists()  # a --work folder from an earlier run: query it again
    with (Repository.open(LocalStorage(str(work / "repo")), PASSWORD) if built else _repo(work / "repo")) as repo:
        clock = Clock()
        ids = [s.id for s in repo.snapshots()] if built else []
        for night in range(0 if built else snapshots):
            if night:
                days += 1
                for _ in range(20):
                    key = (rnd.randrange(CONVERSATIONS), rnd.randrange(days - 1))
                    versions[key] = versions.get(key, 0) + 1
            _write_night(src, days, versions)
            result = run_backup(repo, BackupOptions(paths=[str(src)]))
            ids.append(result.snapshot.id)
            print(f"night {night}: {days * CONVERSATIONS * PER_FILE} messages (before deletions), "
                  f"{time.process_time() - clock.cpu:.1f} s CPU so far", flush=True)
        if not built:
            out["build_cpu_s"], out["build_wall_s"] = (round(v, 1) for v in clock.done())
            out["last_messages"] = days * CONVERSATIONS * PER_FILE
        shutil.rmtree(os.path.join(repo.cache_dir, "messages"), ignore_errors=True)
        with MessageIndex(repo) as index:
            clock = Clock()
            index.ensure(repo.snapshots())
            out["index_cpu_s"], out["index_wall_s"] = (round(v, 2) for v in clock.done())
            out["cache_bytes"] = sum(f.stat().st_size for f in Path(repo.cache_dir, "messages").iterdir())
            for name, filters, scope in (("search_rare_all", Filters(query=RARE), ids),
                                         ("search_common_all", Filters(query="rollback"), ids),
                                         ("search_author_since_all", Filters(author="user7",
                                                                             since_ms=1_700_000_000_000 + 60 * 86_400_000), ids),
                                         ("search_rare_one", Filters(query=RARE), ids[-1:])):
                clock = Clock()
                found = search(index, scope, filters)
                cpu, wall = clock.done()
                out[name] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "results": len(found)}
                print(name, out[name], flush=True)
            clock = Clock()
            d = diff(index, ids[-2], ids[-1])
            out["diff_last_two"] = {"cpu_s": round(clock.done()[0], 2),
                                    "added": sum(len(c.added) for c in d), "edited": sum(len(c.edited) for c in d),
                                    "deleted": sum(len(c.deleted) for c in d)}
            clock = Clock()
            s = stats(index, ids[-1])
            out["stats_last"] = {"cpu_s": round(clock.done()[0], 2), "messages": sum(p.messages for p in s)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--nights", type=int, default=4)
    b.add_argument("--scale", type=float, default=10.0)
    b.add_argument("--cli", action="store_true", help="time `strongroom backup` processes (see bench_backup_cli)")
    b.add_argument("--profile", choices=("text-heavy", "attachment-heavy"), default="text-heavy",
                   help="the corpus (bench/corpus.py)")
    s = sub.add_parser("search")
    s.add_argument("--snapshots", type=int, default=30)
    s.add_argument("--messages", type=int, default=1_000_000)
    for p in (b, s):
        p.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="strongroom-bench-messages-"))
    os.environ.setdefault("STRONGROOM_CACHE_DIR", str(work / "cache"))
    try:
        if args.what == "backup":
            result = (bench_backup_cli if args.cli else bench_backup)(args.nights, args.scale, work, args.profile)
        else:
            result = bench_search(args.snapshots, args.messages, work)
        print(json.dumps(result, indent=1))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
