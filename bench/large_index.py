"""Large-index benchmark: a repository whose index lists N chunks (10 M by default), built directly.

Building: a real backup of a small export makes real packs, trees and a snapshot; then index
files listing N fake blobs in fake packs (random ids, ~1000 blobs of ~16 KiB per pack, as a
real 16 MiB pack of text chunks) are sealed and stored without going through the cache, and
every fake pack is created as a sparse file of its recorded size, so the structural check finds
each indexed pack present.  Nothing here changes the format: these are ordinary index files.

Measured, each as a CLI child process (wall time and the child's own peak RSS from wait4):
- cold open: ``snapshots`` with an empty cache (rebuilds the LMDB cache from all index files);
- warm open: ``snapshots`` again;
- a small backup (a changed night of the export; every new chunk is looked up in the big index);
- ``check`` (with ``--read-data`` when it exists: only the real packs hold data, so the fake
  ones would fail it -- then plain ``check`` is measured as well);
- ``forget --keep-last 1 --prune`` when that command exists (it would have to rewrite no fake
  pack, since none is referenced... it deletes them all: measured as the worst case);
and in-process: lookup rate of present and absent ids against the cache.

    python bench/large_index.py --chunks 10000000 --workdir /tmp/srbench-index
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import PASSWORD, run_step, source_label, source_snapshot  # noqa: E402

_COUNT = struct.Struct("<I")
_PACK = struct.Struct("<32s Q H")
BLOBS_PER_PACK = 1000
ENTRY = struct.Struct("<32s B B I Q I I")  # as strongroom.pack.ENTRY (spec, "Index files")
DATA, SALT_SIZE = 0, 32
PACKS_PER_INDEX = 100
AVG_CHUNK = 16 * 1024


def fake_index_payload(rng: random.Random, packs: int) -> tuple[bytes, list[tuple[str, int]]]:
    """An index payload (format of spec "Index files") for ``packs`` fake packs; and (name, size)."""
    out = [_COUNT.pack(0), _COUNT.pack(packs)]
    listed = []
    pack_entry = ENTRY.pack
    for _ in range(packs):
        name = rng.randbytes(32)
        ids = rng.randbytes(32 * BLOBS_PER_PACK)
        entries, offset = [], 0
        for i in range(BLOBS_PER_PACK):
            raw = AVG_CHUNK // 2 + (i * 7919) % AVG_CHUNK
            length = raw // 3 + 16
            entries.append(pack_entry(ids[32 * i:32 * i + 32], DATA, 1, 0, offset, length, raw))
            offset += length
        size = offset + 4096  # header + trailer, roughly
        envelope = b"\0" + rng.randbytes(SALT_SIZE)
        out += [_PACK.pack(name, size, len(envelope)), envelope, _COUNT.pack(BLOBS_PER_PACK), *entries]
        listed.append((name.hex(), size))
    return b"".join(out), listed


def sample_ids(rng_seed: int, chunks: int, k: int) -> list[bytes]:
    """Re-derive ``k`` of the fake ids (replaying the generator is cheaper than keeping them)."""
    rng = random.Random(rng_seed)
    packs = chunks // BLOBS_PER_PACK
    per_pack = 20
    want = set(random.Random(rng_seed + 1).sample(range(packs), min(packs, -(-k // per_pack))))
    ids = []
    for p in range(packs):
        rng.randbytes(32)
        block = rng.randbytes(32 * BLOBS_PER_PACK)
        rng.randbytes(SALT_SIZE)
        if p in want:
            step = BLOBS_PER_PACK // per_pack
            ids += [block[32 * j:32 * j + 32] for j in range(0, BLOBS_PER_PACK, step)]
    return ids


def build(repo_path: Path, cache: Path, chunks: int, seed: int) -> float:
    from strongroom.crypto import sealed
    from strongroom.pack import pack_path
    from strongroom.repository import Repository, object_name
    from strongroom.storage import open_storage

    t0 = time.perf_counter()
    storage = open_storage(str(repo_path))
    repo = Repository.open(storage, PASSWORD.encode(), cache_root=str(cache))
    rng = random.Random(seed)
    total_packs = chunks // BLOBS_PER_PACK
    done = 0
    while done < total_packs:
        n = min(PACKS_PER_INDEX, total_packs - done)
        payload, listed = fake_index_payload(rng, n)
        data = sealed.seal(repo.master, sealed.MAGIC_INDEX, payload)
        storage.store(f"index/{object_name(data)}", data)
        for name, size in listed:
            path = repo_path / pack_path(name)
            path.parent.mkdir(exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(size)  # sparse: present with its recorded size, no disk used
        done += n
        if done % (10 * PACKS_PER_INDEX) == 0 or done == total_packs:
            print(f"  built {done * BLOBS_PER_PACK:,} / {chunks:,} chunks", flush=True)
    repo.close()
    return time.perf_counter() - t0


def lookup_rate(repo_path: Path, cache: Path, present: list[bytes], absent: int) -> tuple[float, float]:
    from strongroom.repository import Repository
    from strongroom.storage import open_storage

    repo = Repository.open(open_storage(str(repo_path)), PASSWORD.encode(), cache_root=str(cache))
    try:
        t0 = time.perf_counter()
        hits = sum(repo.index.lookup(i) is not None for i in present)
        t_hit = time.perf_counter() - t0
        misses = [secrets.token_bytes(32) for _ in range(absent)]
        t0 = time.perf_counter()
        found = sum(repo.index.has(i) for i in misses)
        t_miss = time.perf_counter() - t0
    finally:
        repo.close()
    if hits != len(present) or found:
        raise SystemExit(f"lookup check failed: {hits}/{len(present)} present ids found, {found} absent ids found")
    return len(present) / t_hit, absent / t_miss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=10_000_000)
    ap.add_argument("--workdir", default="/tmp/srbench-index")
    ap.add_argument("--scale", type=float, default=2.0, help="size of the small real export")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reuse", action="store_true", help="measure again on the repository an earlier run built")
    ap.add_argument("--strongroom-src", default="HEAD",
                    help="a git revision of this checkout (default HEAD) or a directory holding strongroom/")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    if a.reuse:
        src = work / "strongroom-src"
    else:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        src = source_snapshot(work, a.strongroom_src)
    sys.path.insert(0, str(src))  # the in-process parts use the same copy as the CLI runs
    print(f"strongroom: {source_label(a.strongroom_src)}; {a.chunks:,} chunks", flush=True)
    from corpus import params_for, write_night
    repo_path, cache, export = work / "repo", work / "cache", work / "export"
    env = dict(os.environ, STRONGROOM_REPO=str(repo_path), STRONGROOM_PASSWORD=PASSWORD,
               STRONGROOM_CACHE_DIR=str(cache), PYTHONPATH=str(src))
    cmd = [sys.executable, "-m", "strongroom"]
    log = open(work / "commands.log", "a")  # noqa: SIM115

    def step(label: str, *args: str):
        log.write(f"\n$ strongroom {' '.join(args)}\n")
        log.flush()
        s = run_step([*cmd, *args], env, log=log)
        print(f"{label:34} {s.seconds:8.2f} s  cpu {s.cpu:8.2f} s  peak RSS {s.rss_mb:6.0f} MB "
              f"(anonymous {s.anon_mb:4.0f} MB)  rc {s.rc}", flush=True)
        return s

    params = params_for("attachment-heavy", a.scale)
    if not a.reuse:
        write_night(export, 0, params)
        step("init", "init")
        step("first real backup", "backup", str(export), "--host", "bench")
        print(f"building {a.chunks:,} fake chunks in {a.chunks // BLOBS_PER_PACK:,} packs ...", flush=True)
        seconds = build(repo_path, cache, a.chunks, a.seed)
        print(f"built in {seconds:.1f} s", flush=True)
    index_mb = sum(f.stat().st_size for f in (repo_path / "index").iterdir()) / 1e6
    print(f"index files {index_mb:.0f} MB", flush=True)

    shutil.rmtree(cache)
    step("cold open (cache rebuild)", "snapshots")
    cache_mb = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6
    print(f"{'':34} cache on disk {cache_mb:.0f} MB")
    step("warm open", "snapshots")
    write_night(export, 2 if a.reuse else 1, params)
    step("small backup (next night)", "backup", str(export), "--host", "bench")
    helps = subprocess.run([*cmd, "check", "--help"], env=env, capture_output=True, text=True).stdout
    step("check", "check")
    if "--read-data" in helps:
        step("check --read-data (fake packs fail)", "check", "--read-data")
    else:
        print("check --read-data: does not exist yet")
    if subprocess.run([*cmd, "forget", "--help"], env=env, capture_output=True).returncode == 0:
        step("forget --keep-last 1 --prune", "forget", "--keep-last", "1", "--prune")
    else:
        print("forget/prune: do not exist yet (skipped)")
    present = sample_ids(a.seed, a.chunks, 20_000)
    hit_rate, miss_rate = lookup_rate(repo_path, cache, present, 100_000)
    print(f"lookup rate: {hit_rate:,.0f}/s present ids ({len(present):,} sampled), "
          f"{miss_rate:,.0f}/s absent ids (has())")
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
