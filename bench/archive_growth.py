"""Repository growth per night and backup CPU time, with and without ``--expand-archives``.

Nightly full exports from bench/corpus.py (the Slack export also delivered as a deflated zip,
re-created every night). Two fresh repositories get the same nights, one with archives expanded;
for each night it prints the bytes added and the backup's CPU time (user + system of this
process, the writer's threads included), for the whole export and for the zip alone.

    PYTHONPATH=src python bench/archive_growth.py /tmp/growth --nights 4 --scale 5
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import ZIP_NAME, params_for, write_night  # noqa: E402

from strongroom.commands.backup import BackupOptions, run_backup  # noqa: E402
from strongroom.crypto.keyfile import KdfParams  # noqa: E402
from strongroom.repository import Repository  # noqa: E402
from strongroom.storage.local import LocalStorage  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir")
    ap.add_argument("--nights", type=int, default=4)
    ap.add_argument("--scale", type=float, default=5.0)
    ap.add_argument("--profile", default="text-heavy")
    a = ap.parse_args(argv)
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    export = work / "export"
    export.mkdir(parents=True)
    params = params_for(a.profile, a.scale)
    repos = {}
    for what in ("all", "zip"):
        for expand in (False, True):
            repos[what, expand] = Repository.init(LocalStorage(str(work / f"repo-{what}-{int(expand)}")), b"bench",
                                                  kdf=KdfParams(memory_kib=64, iterations=1, lanes=1))
    rows = []
    for night in range(a.nights):
        stats = write_night(export, night, params)
        row = {"night": night, "export_bytes": stats.bytes, "zip_bytes": stats.zip_bytes}
        for (what, expand), repo in repos.items():
            path = export if what == "all" else export / ZIP_NAME
            before = cpu()
            result = run_backup(repo, BackupOptions(paths=[str(path)], expand_archives=expand))
            key = f"{what}_{'expanded' if expand else 'plain'}"
            row[key + "_added"] = result.summary.bytes_added
            row[key + "_cpu_s"] = round(cpu() - before, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for repo in repos.values():
        repo.close()
    total = {k: sum(r[k] for r in rows[1:]) for k in rows[0] if k.endswith("_added")}
    print("nights 1..: " + json.dumps(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
