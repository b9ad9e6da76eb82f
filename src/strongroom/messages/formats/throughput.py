"""Measure how fast the readers parse: ``python -m strongroom.messages.formats.throughput DIR``.

Recognises the exports under DIR, reads every message, and prints per platform the bytes of
the files read, the messages, the CPU seconds (process time: fair on a loaded machine) and
MB/s of CPU time.  ``--pieces`` also reads every file that has a piece-by-piece reader (spec
§22.10) in the content-defined chunks a backup cuts (text profile), feeding the state from
piece to piece, and prints the same figures for that beside the whole-file ones (the chunking
itself is not timed).  ``--generate SCALE`` first writes the samples generator's night 0 there
(text only), plus a Zulip realm export and an Element room export of 1,500 × SCALE messages
each (the generator has neither; 2 % of the Matrix events are edits), so runs are repeatable."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from collections import defaultdict

from . import LocalExportFiles, find_exports
from .common import log_warning


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


def measure_pieces(root: str) -> dict[str, dict[str, float]]:
    """Whole-file ``messages()`` against ``segment_reader().feed()`` over the chunker's pieces,
    per platform, for the files that have a segment reader; messages must agree."""
    from ...chunker import ChunkingProfiles, chunk_stream
    from ..model import Export

    files = LocalExportFiles(root)
    out: dict[str, dict[str, float]] = defaultdict(lambda: {
        "files": 0, "bytes": 0, "pieces": 0, "messages": 0, "whole_cpu_s": 0.0, "pieces_cpu_s": 0.0})
    context = ("users.json", "channels.json", "groups.json", "dms.json", "mpims.json", "realm.json")
    for reader, export in find_exports(files):
        make = getattr(reader, "segment_reader", None)
        for path in export.files if make is not None else ():
            seg = make(files, export, path, log_warning)
            if seg is None:
                continue
            one = Export(export.platform, export.root,
                         tuple(p for p in export.files if p == path or p.rpartition("/")[2] in context))
            with files.open(path) as f:
                pieces = list(chunk_stream(f, ChunkingProfiles().text))
            row = out[reader.platform]
            t = time.process_time()
            whole = list(reader.messages(files, one, log_warning))
            row["whole_cpu_s"] += time.process_time() - t
            t = time.process_time()
            got: list = []
            state = seg.initial()
            for i, piece in enumerate(pieces):
                msgs, state = seg.feed(state, piece, i == len(pieces) - 1, log_warning)
                got += msgs
            row["pieces_cpu_s"] += time.process_time() - t
            if got != whole:
                raise SystemExit(f"{path}: piece-by-piece messages differ from the whole file's")
            row["files"] += 1
            row["bytes"] += sum(map(len, pieces))
            row["pieces"] += len(pieces)
            row["messages"] += len(got)
    for row in out.values():
        for k in ("whole", "pieces"):
            cpu = row[f"{k}_cpu_s"]
            row[f"{k}_mb_per_cpu_s"] = round(row["bytes"] / 1e6 / cpu, 1) if cpu else 0.0
            row[f"{k}_cpu_s"] = round(cpu, 3)
    return dict(out)


def synthetic(root: str, count: int) -> None:
    """Deterministic Zulip and Matrix exports of ``count`` messages each (mixed English/Chinese)."""
    rng = random.Random(1)
    words = ("the build broke the dashboard before lunch deploy rollback ok thanks "
             "我们 下午 看了一下 监控 告警").split()

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))

    t0 = 1740819600
    os.makedirs(os.path.join(root, "zulip"), exist_ok=True)
    with open(os.path.join(root, "zulip", "realm.json"), "w", encoding="utf-8") as f:
        json.dump({"zerver_realm": [{"id": 1}],
                   "zerver_userprofile": [{"id": u, "full_name": f"User {u}"} for u in range(20)],
                   "zerver_stream": [{"id": s, "name": f"stream-{s}"} for s in range(5)],
                   "zerver_recipient": [{"id": s, "type": 2, "type_id": s} for s in range(5)]}, f)
    with open(os.path.join(root, "zulip", "messages-000001.json"), "w", encoding="utf-8") as f:
        f.write('{"zerver_message": [')
        for i in range(count):
            f.write(("," if i else "") + "\n" + json.dumps({
                "id": i, "sender": i % 20, "recipient": i % 5, "subject": f"topic {i % 7}",
                "content": text(), "rendered_content": f"<p>{text()}</p>", "date_sent": t0 + i,
                "last_edit_time": None, "has_attachment": False}, ensure_ascii=False))
        f.write('], "zerver_usermessage": []}')
    os.makedirs(os.path.join(root, "matrix"), exist_ok=True)
    with open(os.path.join(root, "matrix", "room.json"), "w", encoding="utf-8") as f:
        f.write('{"room_name": "Ops", "export_date": "x", "exported_by": "@a:x", "messages": [')
        for i in range(count):
            content: dict = {"msgtype": "m.text", "body": text()}
            if i and i % 50 == 0:
                content = {"msgtype": "m.text", "body": "* edit", "m.new_content": {"msgtype": "m.text", "body": text()},
                           "m.relates_to": {"rel_type": "m.replace", "event_id": f"$e{i - 10}"}}
            f.write(("," if i else "") + "\n" + json.dumps({
                "type": "m.room.message", "sender": f"@u{i % 20}:x", "content": content,
                "origin_server_ts": (t0 + i) * 1000, "event_id": f"$e{i}", "room_id": "!r:x"},
                ensure_ascii=False))
        f.write("]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--generate", type=float, metavar="SCALE")
    ap.add_argument("--pieces", action="store_true", help="also read in chunks, piece by piece")
    args = ap.parse_args()
    if args.generate:
        from ...samples import ExportParams, write_day
        write_day(args.dir, 0, ExportParams(scale=args.generate, attachment_share=0.0))
        synthetic(args.dir, int(1500 * args.generate))
    print(json.dumps(measure_pieces(args.dir) if args.pieces else measure(args.dir), indent=1))


if __name__ == "__main__":
    main()
