"""What text chunk size and compression would store one more night of chat exports most cheaply.

Writes nights D-1 and D of the corpus, chunks the text files (as strongroom classifies them)
of both with several FastCDC size settings, and for night D reports: chunks, how many bytes
are in chunks night D-1 did not have (what a backup must store), that new data compressed per
chunk with zstd (as strongroom stores blobs today), and compressed with a zstd dictionary
trained on night D-1's chunks (the issue's proposal), plus the per-chunk metadata (AEAD tag,
index entry, chunk id in the tree).  Each setting is measured with plain FastCDC cuts and with
cuts moved back to record boundaries (spec §7.4, ``--records both``).  No repository is involved;
this is a model of what the repository would add.

    python bench/chunk_sizes.py --day 5 --scale 20 --profile text-heavy
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "src"))

import blake3  # noqa: E402
import zstandard  # noqa: E402

from corpus import params_for, write_night  # noqa: E402
from strongroom.chunker import TEXT, ChunkerParams, chunk_stream, classify  # noqa: E402

SETTINGS = [(512, 2048, 8192), (1024, 4096, 16384), (2048, 8192, 32768), (4096, 16384, 65536)]
PER_CHUNK = 16 + 58 + 32  # GCM tag, index entry, id in the file's chunk list
DICT_SIZE = 112 * 1024


def text_files(root: Path):
    for d, _, names in sorted(os.walk(root)):
        for n in sorted(names):
            path = Path(d, n)
            with open(path, "rb") as f:
                if classify(f.read(8192)) == TEXT:
                    yield path


def chunks_of(root: Path, params: ChunkerParams, records: bool):
    for path in text_files(root):
        with open(path, "rb") as f:
            yield from chunk_stream(f, params, records=records)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--day", type=int, default=5)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--profile", default="text-heavy")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/srbench-chunks")
    ap.add_argument("--records", choices=("no", "yes", "both"), default="both", help="record-boundary cuts (§7.4)")
    ap.add_argument("--settings", default=",".join(f"{lo}:{avg}:{hi}" for lo, avg, hi in SETTINGS),
                    help="comma-separated MIN:AVG:MAX text chunk sizes")
    a = ap.parse_args(argv)
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    params = params_for(a.profile, a.scale)
    before, after = work / "before", work / "after"
    write_night(before, a.day - 1, params)
    write_night(after, a.day, params)
    print(f"night {a.day} vs {a.day - 1}, {a.profile}, scale {a.scale:g}, zstd level {a.level}")
    print("| text chunks min/avg/max | cuts | chunks | mean chunk | new chunks | new bytes | stored, zstd per chunk "
          "| stored, zstd + dictionary | per-chunk metadata |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    plain = zstandard.ZstdCompressor(level=a.level)
    variants = {"no": [False], "yes": [True], "both": [False, True]}[a.records]
    settings = [tuple(int(x) for x in s.split(":")) for s in a.settings.split(",")]
    for (lo, avg, hi), records in [(s, r) for s in settings for r in variants]:
        p = ChunkerParams(lo, avg, hi)
        seen, samples, rng = set(), [], random.Random(1)
        for i, c in enumerate(chunks_of(before, p, records)):
            seen.add(blake3.blake3(c).digest())
            if len(samples) < 4000:  # reservoir sample for dictionary training
                samples.append(c)
            elif (j := rng.randrange(i + 1)) < 4000:
                samples[j] = c
        dict_c = zstandard.ZstdCompressor(level=a.level, dict_data=zstandard.train_dictionary(DICT_SIZE, samples))
        n = total = new = new_bytes = z_plain = z_dict = 0
        for c in chunks_of(after, p, records):
            n += 1
            total += len(c)
            h = blake3.blake3(c).digest()
            if h in seen:
                continue
            seen.add(h)
            new += 1
            new_bytes += len(c)
            z_plain += min(len(c), len(plain.compress(c)))
            z_dict += min(len(c), len(dict_c.compress(c)))
        print(f"| {lo // 1024 or lo / 1024:g}K/{avg // 1024}K/{hi // 1024}K | {'records' if records else 'FastCDC'} | {n:,} | {total / n / 1024:.1f} KiB "
              f"| {new:,} ({new / n:.0%}) | {new_bytes / 1e6:.1f} MB ({new_bytes / total:.0%}) "
              f"| {z_plain / 1e6:.2f} MB | {z_dict / 1e6:.2f} MB + {DICT_SIZE // 1024} KiB dict "
              f"| {new * PER_CHUNK / 1e6:.2f} MB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
