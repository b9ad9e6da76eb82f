"""Chunking CPU of the files that changed between two nights: full FastCDC against chunking
guided by the previous version's chunks (strongroom/rechunk.py), in-process, without the rest of
a backup (no index, compression or packs: the previous chunk lengths come from a dict).

    python bench/rechunk.py --night 3 --scale 60 --edit-rate 0.002 --workdir /tmp/srbench-rechunk
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

import blake3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import params_for, write_night  # noqa: E402

from strongroom.chunker import SNIFF_SIZE, ChunkingProfiles, chunk_views, classify  # noqa: E402
from strongroom.rechunk import PreviousChunks, guided_chunk_views  # noqa: E402

KEY = bytes(32)


def blob_id(view) -> bytes:
    return blake3.blake3(view, key=KEY).digest()


def changed_files(old_root: Path, new_root: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for folder, _, names in os.walk(new_root):
        for name in names:
            new = Path(folder, name)
            old = old_root / new.relative_to(new_root)
            if old.exists() and old.stat().st_size and old.read_bytes() != new.read_bytes():
                pairs.append((old, new))
    return pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--night", type=int, default=3)
    ap.add_argument("--scale", type=float, default=60.0)
    ap.add_argument("--profile", choices=("attachment-heavy", "text-heavy"), default="attachment-heavy")
    ap.add_argument("--edit-rate", type=float, default=None, help="the corpus's edit_rate (default: its own)")
    ap.add_argument("--records", action="store_true", help="record-boundary chunking (spec §7.4)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workdir", default="/tmp/srbench-rechunk")
    a = ap.parse_args(argv)
    work = Path(a.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    params = params_for(a.profile, a.scale)
    if a.edit_rate is not None:
        params = dataclasses.replace(params, edit_rate=a.edit_rate)
    for n in (a.night - 1, a.night):
        write_night(work / f"night{n}", n, params)
    profiles = ChunkingProfiles(records=a.records)
    buffer = bytearray(8 << 20)
    files = []
    for old, new in changed_files(work / f"night{a.night - 1}", work / f"night{a.night}"):
        with open(old, "rb") as f:
            head = f.read(SNIFF_SIZE)
            text = classify(head) == "text"
            chunks = [(blob_id(v), len(v)) for v in chunk_views(
                f, profiles.for_class(classify(head)), buffer=buffer, prefix=head, records=text and a.records)]
        files.append((new, chunks))

    def run(guided: bool) -> tuple[int, int]:
        verified = total = 0
        for path, previous in files:
            with open(path, "rb") as f:
                head = f.read(SNIFF_SIZE)
                params = profiles.for_class(classify(head))
                records = classify(head) == "text" and a.records
                digest = blake3.blake3()
                if guided:
                    lengths = dict(previous)
                    prev = PreviousChunks((i for i, _ in previous), lambda ids: [lengths[i] for i in ids])
                    for view, _, reused in guided_chunk_views(f, params, prev, blob_id, buffer=buffer, prefix=head,
                                                              digest=digest, records=records):
                        verified += reused * len(view)
                        total += len(view)
                else:
                    for view in chunk_views(f, params, buffer=buffer, prefix=head, digest=digest, records=records):
                        blob_id(view)
                        total += len(view)
        return verified, total

    cpu: dict[str, list[float]] = {"FastCDC": [], "guided": []}
    for _ in range(a.rounds):
        for name in cpu:
            started = time.process_time()
            verified, total = run(name == "guided")
            cpu[name].append(time.process_time() - started)
    print(f"{len(files)} changed files, {total / 1e6:.1f} MB; guided: {verified / 1e6:.1f} MB verified, "
          f"{(total - verified) / 1e6:.1f} MB cut by FastCDC")
    for name, values in cpu.items():
        values.sort()
        print(f"{name}: CPU min {values[0]:.3f} s, median {values[len(values) // 2]:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
