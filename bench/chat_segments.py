"""The catalogue's CPU for the WhatsApp chats of the nightly corpus, read whole against piece by
piece with the previous night's memo (spec §22.10, §23.6).

    PYTHONPATH=src python bench/chat_segments.py --nights 4 --scale 10 [--repeat 3]
    PYTHONPATH=src python bench/chat_segments.py --matrix 3000

Each night of bench/corpus.py's text-heavy corpus is backed up without a catalogue; then the
catalogue of its WhatsApp exports is built with the readers
as they are (segment reader and memo, the memo carried from night to night) and with the same
readers stripped of their segment reader (read whole). CPU is time.process_time around
build_catalog only (this process, all threads), the minimum of --repeat builds (a repeated
build reuses nothing: it starts from the memo of the night before, and the part table is not
used; whole and piece-by-piece builds take turns to go first in one repository, as the second
finds the parts stored). Both catalogues are compared: they must be the same tree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import params_for, write_night  # noqa: E402

from strongroom.commands.backup import BackupOptions, run_backup  # noqa: E402
from strongroom.crypto.keyfile import KdfParams  # noqa: E402
from strongroom.messages.catalog_build import build_catalog  # noqa: E402
from strongroom.messages.catalog_format import encode_record, may_cut_after  # noqa: E402
from strongroom.messages.catalog_memo import PieceMemo  # noqa: E402
from strongroom.messages.formats import matrix, whatsapp  # noqa: E402
from strongroom.repository import Repository  # noqa: E402
from strongroom.storage import LocalStorage  # noqa: E402
from strongroom.writer import BlobWriter  # noqa: E402


class Whole:
    """A reader without its segment reader: the file is read whole."""

    def __init__(self, reader) -> None:
        self.reader, self.platform = reader, reader.platform

    def find(self, files):
        return self.reader.find(files)

    def messages(self, files, export, warn=None):
        return self.reader.messages(files, export, warn=warn)


class Memos:
    """A memo table in memory: night N's memos are what night N+1 starts from."""

    def __init__(self) -> None:
        self.saved: dict[bytes, dict] = {}
        self.fresh: dict[bytes, dict] = {}

    def load(self, key: bytes) -> PieceMemo:
        return PieceMemo(self.saved.get(key))

    def remember(self, key: bytes, memo: PieceMemo) -> None:
        self.fresh[key] = memo.current

    def night_done(self) -> None:
        self.saved, self.fresh = self.fresh, {}


def bench_matrix(events: int, repeat: int) -> None:
    """--matrix N: the reading CPU (no repository) of an Element room of N events, the night
    after a first read, read whole against piece by piece with the first read's memo, when the
    night adds a plain message or an edit, to a room without edits and to one where every 50th
    event is an edit (the context digest of §22.10: a new edit changes every state)."""
    import io

    import blake3

    class Files:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def paths(self):
            return ["room.json"]

        def size(self, path):
            return len(self.data)

        def open(self, path):
            return io.BytesIO(self.data)

    def event(i: int, edit: bool = False) -> dict:
        content = {"msgtype": "m.text", "body": f"message {i} " + "lorem ipsum dolor " * 5}
        if edit:
            content = {"msgtype": "m.text", "body": "* x", "m.new_content": {"msgtype": "m.text", "body": f"edit {i}"},
                       "m.relates_to": {"rel_type": "m.replace", "event_id": f"$e{i - 10}"}}
        return {"type": "m.room.message", "sender": f"@u{i % 20}:x", "event_id": f"$e{i}",
                "origin_server_ts": 1740819600000 + i * 1000, "content": content, "unsigned": {"age": i}}

    def room(evs: list[dict]) -> bytes:
        return json.dumps({"room_name": "Ops", "export_date": "x", "exported_by": "@a:x", "messages": evs},
                          indent=4).encode()

    reader = matrix.MatrixReader()
    cut_hash = lambda b: blake3.blake3(b).digest(16)  # noqa: E731

    def whole(data: bytes) -> None:
        files = Files(data)
        for m in reader.messages(files, reader.find(files)[0], warn=lambda w: None):
            may_cut_after(encode_record(m), cut_hash)

    def pieces(data: bytes, previous: dict | None) -> PieceMemo:
        files = Files(data)
        memo = PieceMemo(previous)
        segments = reader.segment_reader(files, reader.find(files)[0], "room.json", lambda w: None)
        blocks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
        for _ in memo.read(segments, blocks, lambda w: None, cut_hash):
            pass
        return memo

    def cpu(f) -> float:
        best = None
        for _ in range(repeat):
            t = time.process_time()
            f()
            t = time.process_time() - t
            best = t if best is None else min(best, t)
        return round(best, 4)

    for edits in (False, True):
        base = [event(i, edits and i % 50 == 0 and i > 0) for i in range(events)]
        first = pieces(room(base), None)
        for night, extra in (("a plain message", event(events)), ("an edit", event(events, True))):
            data = room(base + [extra])
            memo = pieces(data, first.current)
            print(json.dumps({"room": "with edits" if edits else "without edits", "night adds": night,
                              "whole_cpu_s": cpu(lambda: whole(data)),
                              "pieces_cpu_s": cpu(lambda: pieces(data, first.current)),
                              "pieces_parsed": memo.parsed, "pieces_reused": memo.reused}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=4)
    ap.add_argument("--scale", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--matrix", type=int, metavar="EVENTS", help="measure a synthetic Matrix room instead")
    args = ap.parse_args()
    if args.matrix:
        return bench_matrix(args.matrix, max(args.repeat, 5))
    params = params_for("text-heavy", args.scale)
    kdf = KdfParams(memory_kib=64, iterations=1, lanes=1)
    segmented = [whatsapp.WhatsAppReader()]  # (the corpus has no Matrix room: its reader would only sniff)
    whole = [Whole(r) for r in segmented]
    memos = Memos()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "exports"
        with Repository.init(LocalStorage(str(Path(work) / "repo")), b"bench", kdf=kdf) as repo:
            for night in range(args.nights):
                stats = write_night(src, night, params)
                snap = run_backup(repo, BackupOptions(paths=[str(src)], catalog=False)).snapshot
                tree = bytes.fromhex(snap.tree)
                row: dict = {"night": night, "bytes": stats.bytes}
                roots, best = {}, {}
                for r in range(args.repeat):  # alternately first: the second build finds its parts stored
                    for kind in ("whole", "pieces") if r % 2 == 0 else ("pieces", "whole"):
                        with BlobWriter(repo) as writer:
                            cpu = time.process_time()
                            root, st = build_catalog(
                                repo, writer, tree, readers=segmented if kind == "pieces" else whole,
                                memos=memos if kind == "pieces" else None)
                            cpu = time.process_time() - cpu
                            writer.flush()
                        best[kind] = min(best.get(kind, cpu), cpu)
                        roots[kind] = root
                        if kind == "pieces":
                            row.update(files=st.files_read, messages=st.messages, pieces_parsed=st.pieces_parsed,
                                       pieces_reused=st.pieces_reused)
                memos.night_done()
                assert roots["whole"] is not None and roots["whole"] == roots["pieces"], "catalogues differ"
                row.update({f"{k}_cpu_s": round(v, 3) for k, v in best.items()})
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(json.dumps({"whole_cpu_s": round(sum(r["whole_cpu_s"] for r in rows), 3),
                      "pieces_cpu_s": round(sum(r["pieces_cpu_s"] for r in rows), 3),
                      "after_night_0": {k: round(sum(r[k] for r in rows[1:]), 3)
                                        for k in ("whole_cpu_s", "pieces_cpu_s")}}))


if __name__ == "__main__":
    main()
