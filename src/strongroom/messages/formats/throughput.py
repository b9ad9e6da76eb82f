"""Measure how fast the readers parse: ``python -m strongroom.messages.formats.throughput DIR``.

Recognises the exports under DIR, reads every message, and prints per platform the bytes of
the files read, the messages, the CPU seconds (process time: fair on a loaded machine) and
MB/s of CPU time.  ``--generate SCALE`` first writes the samples generator's night 0 there
(text only) so runs are repeatable."""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict

from . import LocalExportFiles, find_exports


def measure(root: str) -> dict[str, dict[str, float]]:
    files = LocalExportFiles(root)
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"bytes": 0, "messages": 0, "cpu_s": 0.0})
    t0 = time.process_time()
    found = find_exports(files)
    find_cpu = time.process_time() - t0
    for reader, export in found:
        row = out[reader.platform]
        row["bytes"] += sum(files.size(p) for p in export.files)
        t = time.process_time()
        row["messages"] += sum(1 for _ in reader.messages(files, export))
        row["cpu_s"] += time.process_time() - t
    for row in out.values():
        row["mb_per_cpu_s"] = round(row["bytes"] / 1e6 / row["cpu_s"], 1) if row["cpu_s"] else 0.0
        row["cpu_s"] = round(row["cpu_s"], 3)
    result = dict(out)
    result["_find"] = {"cpu_s": round(find_cpu, 3)}
    result["_max_rss_mb"] = {"value": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--generate", type=float, metavar="SCALE")
    args = ap.parse_args()
    if args.generate:
        from ...samples import ExportParams, write_day
        write_day(args.dir, 0, ExportParams(scale=args.generate, attachment_share=0.0))
    print(json.dumps(measure(args.dir), indent=1))


if __name__ == "__main__":
    main()
