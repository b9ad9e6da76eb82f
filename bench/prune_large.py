"""Peak memory of `prune` on a synthetic repository with millions of chunks.

Builds a repository directly (no chunking, no compression): N tiny data blobs (8 bytes each)
in real, encrypted packs of PACK_SIZE, real index files, trees whose file nodes list the chunks,
and two snapshots: "all" references every file, "half" every other file. Then, in a fresh process
(so the build's memory does not count), forgets "all" and prunes with the default 5% limit:
every pack is half used, so prune marks N blobs, repacks every pack and rewrites the index.

PACK_SIZE is 256 KiB: about 10 000 blobs per pack, the entry count of a 16 MiB pack of 1.6 KiB
chunks. (With 8-byte blobs a 16 MiB pack would hold 700 000 entries, a shape no real backup
produces; prune holds one pack's entries in memory, so its memory grows with entries per pack,
not with the repository.)

Reports, as JSON: the build and prune times, the prune's plan, and the prune process's peak
RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which also counts the touched pages of the
memory-mapped LMDB files) and its peak anonymous RSS (sampled from /proc every 50 ms: memory
the kernel cannot simply drop, i.e. what Python objects and buffers use).

    PYTHONPATH=src python bench/prune_large.py --chunks 5000000 --dir /tmp/prune-bench
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from strongroom.compression import NONE
from strongroom.config import Config
from strongroom.crypto.keyfile import KdfParams
from strongroom.indexfile import PackRecord, seal_index
from strongroom.pack import DATA, TREE, PackWriter
from strongroom.repository import Repository, object_name
from strongroom.snapshot import Snapshot
from strongroom.storage import LocalStorage
from strongroom.tree import DIR, FILE, MAX_INLINE_CHUNKS, Node, encode_tree

PASSWORD = b"bench"
FILES_PER_DIR = 8
PACK_SIZE = 256 * 1024
INDEX_BLOBS = 100_000


class _Packer:
    """Fills packs of one blob type and writes an index file every INDEX_BLOBS blobs."""

    def __init__(self, repo: Repository, blob_type: int) -> None:
        self.repo, self.type = repo, blob_type
        self.writer = PackWriter(repo.master)
        self.records: list[PackRecord] = []
        self.pending_blobs = 0

    def add(self, data: bytes) -> bytes:
        blob_id = self.repo.master.blob_id(data)
        self.writer.add(blob_id, self.type, NONE, data, len(data))
        if self.writer.size >= self.repo.config.pack_size:
            self.seal()
        return blob_id

    def seal(self) -> None:
        if not self.writer.entries:
            return
        name, data = self.writer.finish()
        self.repo.store_pack(name, data)
        self.records.append(PackRecord(name, len(data), self.writer.envelope, self.writer.entries))
        self.pending_blobs += len(self.writer.entries)
        self.writer = PackWriter(self.repo.master)
        if self.pending_blobs >= INDEX_BLOBS:
            self.write_index()

    def write_index(self) -> None:
        if self.records:
            data = seal_index(self.repo.master, self.records)
            self.repo.storage.store(f"index/{object_name(data)}", data)
        self.records, self.pending_blobs = [], 0

    def finish(self) -> None:
        self.seal()
        self.write_index()


def build(path: str, chunks: int) -> dict:
    started = time.monotonic()
    repo = Repository.init(LocalStorage(path), PASSWORD, config=Config(compression_level=0, pack_size=PACK_SIZE),
                           kdf=KdfParams(memory_kib=64, iterations=1, lanes=1))
    data, trees = _Packer(repo, DATA), _Packer(repo, TREE)
    files = (chunks + MAX_INLINE_CHUNKS - 1) // MAX_INLINE_CHUNKS
    all_dirs, half_dirs = [], []
    n = 0
    for d in range(0, files, FILES_PER_DIR):
        nodes = []
        for f in range(d, min(d + FILES_PER_DIR, files)):
            count = min(MAX_INLINE_CHUNKS, chunks - n)
            ids = [data.add(struct.pack("<Q", n + i)) for i in range(count)]
            n += count
            nodes.append(Node(name=f"file{f:07d}".encode(), type=FILE, mode=0o644, size=8 * count, content=ids))
        all_dirs.append(Node(name=f"d{d:07d}".encode(), type=DIR, mode=0o755,
                             subtree=trees.add(encode_tree(nodes))))
        half_dirs.append(Node(name=f"d{d:07d}".encode(), type=DIR, mode=0o755,
                              subtree=trees.add(encode_tree(nodes[::2]))))
    roots = {"all": trees.add(encode_tree(all_dirs)), "half": trees.add(encode_tree(half_dirs))}
    data.finish()
    trees.finish()
    now = datetime.now(timezone.utc).isoformat()
    ids = {label: repo.save_snapshot(Snapshot(now, "bench", "bench", ["/synthetic"], root.hex(), tags=[label]))
           for label, root in roots.items()}
    repo.close()
    return {"chunks": n, "files": files, "snapshots": ids, "build_s": round(time.monotonic() - started, 1)}


def _anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def prune_only(path: str, forget_id: str) -> dict:
    from strongroom.commands.forget import run_forget
    from strongroom.commands.prune import PruneOptions, run_prune
    peak_anon = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak_anon[0] = max(peak_anon[0], _anon_kib())

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    repo = Repository.open(LocalStorage(path), PASSWORD)
    opened = time.monotonic()
    run_forget(repo, snapshot_ids=[forget_id])
    result = run_prune(repo, PruneOptions())
    repo.close()
    stop.set()
    peak_anon[0] = max(peak_anon[0], _anon_kib())
    return {"open_and_index_sync_s": round(opened - started, 1),
            "forget_and_prune_s": round(time.monotonic() - opened, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_anon_rss_mib": round(peak_anon[0] / 1024, 1),
            "plan": result.plan.to_json(), "packs_written": result.packs_written,
            "packs_deleted": result.packs_deleted, "bytes_written": result.bytes_written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=5_000_000)
    parser.add_argument("--dir", default="/tmp/strongroom-prune-bench")
    parser.add_argument("--prune-only", metavar="SNAPSHOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repo_path = os.path.join(args.dir, "repo")
    if args.prune_only:
        print(json.dumps(prune_only(repo_path, args.prune_only)))
        return
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    os.environ["STRONGROOM_CACHE_DIR"] = os.path.join(args.dir, "cache")
    report = build(repo_path, args.chunks)
    out = subprocess.run([sys.executable, __file__, "--dir", args.dir, "--prune-only", report["snapshots"]["all"]],
                         check=True, stdout=subprocess.PIPE, env=dict(os.environ)).stdout
    report.update(json.loads(out))
    report["repository_mib_after"] = round(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                                               os.walk(os.path.join(repo_path, "data")) for f in fs) / 2**20, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
