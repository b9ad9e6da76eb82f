"""The catalogue of a changed export file costs what changed in it (spec §23.6): the file is fed
to its reader's segment reader in pieces of about one record, and a piece seen in the file's
previous version, in the same reader state, is answered from the file's memo without parsing.
Small text chunks (64 B .. 1 KiB) make each file span many repository chunks."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.messages import catalog_build, catalog_memo
from strongroom.messages.catalog_build import build_catalog
from strongroom.messages.catalog_index import MessageIndex, cache_folder
from strongroom.messages.catalog_query import Filters, conversation_records, diff, search, stats
from strongroom.messages.model import Message
from strongroom.writer import BlobWriter
from tests.test_catalog import LineReader

PLATFORM = "testchat"


def _message(line: bytes) -> Message:
    d = json.loads(line)
    return Message(PLATFORM, d["c"], d["i"], d["a"], d["t"], d["e"], d["x"], "")


WholeReader = LineReader  # ``*.chat.jsonl``: one JSON message per line, read whole


class LineSegments:
    """The piece-by-piece reader of that format: the state is the unfinished last line."""

    def __init__(self, log: list[int]) -> None:
        self.log = log

    def initial(self) -> bytes:
        return b""

    def feed(self, state: bytes, data: bytes, final: bool, warn) -> tuple[list[Message], bytes]:
        self.log.append(len(data))
        lines = (state + data).split(b"\n")
        rest = b"" if final else lines.pop()
        return [_message(line) for line in lines if line.strip()], rest


class SegmentedReader(WholeReader):
    def __init__(self) -> None:
        self.fed: list[int] = []  # sizes of the pieces fed, to see what was read

    def segment_reader(self, files, export, path, warn):
        return LineSegments(self.fed)


def msg(conv: str, i: int, text: str, edited: bool = False) -> dict:
    return {"c": conv, "i": f"m{i:04d}", "a": f"user{i % 7}", "t": 1_700_000_000_000 + i * 60_000, "e": edited,
            "x": text}


def night(n: int) -> list[dict]:
    """Night ``n``: 300 + 20 n messages in two conversations; each night edits three old ones
    and deletes one, so a little changes all over the file."""
    out = []
    for i in range(300 + 20 * n):
        if n and i % 97 == n:
            continue  # deleted
        edited = n > 0 and i % 89 in (n, n + 1, n + 2)
        text = f"message {i} about the {'deploy' if i % 5 == 0 else 'lunch'} plan" + (f" (edit {n})" if edited else "")
        out.append(msg("general" if i % 3 else "ops", i, text, edited))
    return out


def write(path, messages) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages))


def _backup(repo, src, reader, monkeypatch):
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [reader])
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert not result.warnings
    return result.snapshot


def catalog_stats_of_backups(monkeypatch) -> list:
    """The CatalogStats of every catalogue built from now on, in order."""
    out = []
    build = catalog_build.build_catalog

    def recording(*args, **kwargs):
        root, stats_ = build(*args, **kwargs)
        out.append(stats_)
        return root, stats_

    monkeypatch.setattr(catalog_build, "build_catalog", recording)
    return out


def _nights(repo, src, reader, nights, monkeypatch, each=None):
    """Back up ``nights`` nights of the series; return the last snapshot."""
    for n in range(nights):
        write(src / "team.chat.jsonl", night(n))
        snap = _backup(repo, src, reader, monkeypatch)
        if each is not None:
            each(n, snap)
    return snap


def _all_records(repo, snap) -> list:
    with MessageIndex(repo) as index:
        index.ensure([snap])
        return sorted((r.conversation, r.message_id, r.text, r.edited)
                      for r in search(index, [snap.id], Filters()) for r in [r.record])


def test_segment_catalogue_is_the_whole_file_readers_bit_for_bit(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"

    def compare(n, snap):
        with BlobWriter(repo) as writer:  # the same tree read whole, no memo involved
            whole, _ = build_catalog(repo, writer, bytes.fromhex(snap.tree), readers=[WholeReader()])
            writer.flush()
        assert whole.hex() == snap.catalog
        expected = sorted((m["c"], m["i"], m["x"], m["e"]) for m in night(n))
        assert _all_records(repo, snap) == expected
        with MessageIndex(repo) as index:
            index.ensure([snap])
            per_platform = {s.platform: s.messages for s in stats(index, snap.id)}
        assert per_platform == {PLATFORM: len(expected)}

    _nights(repo, src, SegmentedReader(), 3, monkeypatch, compare)
    assert run_check(repo).ok


def test_an_unchanged_record_is_not_parsed_again(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    write(src / "team.chat.jsonl", night(0))
    _backup(repo, src, reader, monkeypatch)
    size = (src / "team.chat.jsonl").stat().st_size
    # JSON lines: one piece per line, and the (empty) end of the file
    assert sum(reader.fed) == size and len(reader.fed) == len(night(0)) + 1
    reader.fed.clear()
    lines = night(0)
    lines[150] = msg("ops", 150, "a single edit in the middle", True)
    write(src / "team.chat.jsonl", lines)
    snap = _backup(repo, src, reader, monkeypatch)
    assert len(reader.fed) == 1  # only the edited line was parsed
    with MessageIndex(repo) as index:
        index.ensure(repo.snapshots())
        first_snap = repo.snapshots()[0]
        changes = diff(index, first_snap.id, snap.id)
        assert [(d.conversation, [(a.text, b.text) for a, b in d.edited], d.added, d.deleted) for d in changes] == [
            ("ops", [("message 150 about the deploy plan", "a single edit in the middle")], [], [])]


def test_namesakes_in_one_file_exports_keep_a_memo_each(small_chunks_repo, tmp_path, monkeypatch):
    """Several one-file exports of the same name (iOS WhatsApp chats are each a ``_chat.txt``)
    that change together each keep their own memo: every night after the first parses only
    what changed in each, as a lone file would."""
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    stats_ = catalog_stats_of_backups(monkeypatch)
    for n in range(3):
        for chat in range(3):
            write(src / f"chat{chat}" / "team.chat.jsonl",
                  [dict(m, x=f"{m['x']} in chat {chat}") for m in night(n + chat)])
        snap = _backup(repo, src, reader, monkeypatch)
        assert snap.catalog == _whole(repo, snap)
        if n:
            assert stats_[-1].files_read == 3 and stats_[-1].pieces_reused > 8 * stats_[-1].pieces_parsed
    with MessageIndex(repo) as index:
        assert index.memos.count() == 3


def test_a_one_file_export_in_a_new_dated_folder_uses_yesterdays_memo(small_chunks_repo, tmp_path, monkeypatch):
    """Telegram Desktop writes each export to a new dated folder: the file's memo is found by
    its name (and platform), so a night's new folder parses only what changed."""
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    stats_ = catalog_stats_of_backups(monkeypatch)
    for n in range(3):
        write(src / f"ChatExport_2026-11-2{n}" / "team.chat.jsonl", night(n))
        snap = _backup(repo, src, reader, monkeypatch)
        assert snap.catalog == _whole(repo, snap)
        assert stats_[-1].files_read == 1  # (the folders before it are unchanged: their parts reused)
        if n:  # (20 messages added, 3 edited, 1 deleted of ~330)
            assert stats_[-1].pieces_reused > 5 * stats_[-1].pieces_parsed


def _whole(repo, snap) -> str:
    with BlobWriter(repo) as writer:  # the same tree read whole, no memo involved
        root, _ = build_catalog(repo, writer, bytes.fromhex(snap.tree), readers=[WholeReader()])
        writer.flush()
    return root.hex()


def test_the_catalogue_does_not_depend_on_the_cache(small_chunks_repo, tmp_path, monkeypatch):
    """A catalogue written with a warm cache (pieces reused) equals one written from nothing."""
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    snap = _nights(repo, src, reader, 3, monkeypatch)
    shutil.rmtree(cache_folder(repo))
    reader.fed.clear()
    with BlobWriter(repo) as writer:
        root, stats_ = build_catalog(repo, writer, bytes.fromhex(snap.tree), readers=[reader])
        writer.flush()
    assert stats_.pieces_reused == 0 and stats_.pieces_parsed == len(reader.fed) > 300
    assert root.hex() == snap.catalog


def test_a_piece_in_another_state_is_parsed_again(small_chunks_repo, tmp_path, monkeypatch):
    """The memo's key holds the reader's state: a piece that follows a different unfinished line
    is parsed again, never answered from an entry made in another state."""
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    lines = night(0)
    write(src / "team.chat.jsonl", lines)
    _backup(repo, src, reader, monkeypatch)
    # a first line longer than a piece may be (MAX_PIECE, made small): it is cut inside, and
    # its second half is the same bytes as before in another state
    monkeypatch.setattr(catalog_memo, "MAX_PIECE", 64)
    lines[0] = msg("ops", 0, "x" * 5000)
    write(src / "team.chat.jsonl", lines)
    snap = _backup(repo, src, reader, monkeypatch)
    assert _all_records(repo, snap) == sorted((m["c"], m["i"], m["x"], m["e"]) for m in lines)


def test_export_gives_a_conversation_in_time_order(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    messages = night(2)
    messages.reverse()  # the file's order is not time order: segments are sorted only inside
    write(src / "team.chat.jsonl", messages)
    snap = _backup(repo, src, SegmentedReader(), monkeypatch)
    with MessageIndex(repo) as index:
        index.ensure([snap])
        got = [r.message_id for r in conversation_records(index, snap.id, Filters(conversation="ops"),
                                                              str(tmp_path))]
    expected = sorted((m["t"], m["i"]) for m in messages if m["c"] == "ops")
    assert got == [i for _, i in expected] and len(got) > 50


def test_zip_members_are_read_chunk_by_chunk_too(small_chunks_repo, tmp_path, monkeypatch):
    import zipfile
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    src.mkdir()
    for n in range(2):
        with zipfile.ZipFile(src / "export.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("team.chat.jsonl", "".join(json.dumps(m) + "\n" for m in night(n)))
        reader.fed.clear()
        snap = _backup(repo, src, reader, monkeypatch)
        assert _all_records(repo, snap) == sorted((m["c"], m["i"], m["x"], m["e"]) for m in night(n))
        if n == 0:
            first = len(reader.fed)
    assert first == len(night(0)) + 1
    assert len(reader.fed) < first / 5  # the second night's unchanged lines were not parsed again


@pytest.mark.parametrize("seed", range(5))
def test_pieces_cover_the_file_exactly_whatever_the_blocks(seed):
    import random
    rnd = random.Random(seed)
    pretty = json.dumps([msg("general", i, "a" * rnd.randrange(0, 400)) for i in range(400)], indent=4).encode()
    cuts = sorted(rnd.sample(range(1, len(pretty)), 30))
    blocks = [pretty[a:b] for a, b in zip([0] + cuts, cuts + [len(pretty)])]
    got = list(catalog_memo.pieces(blocks))
    assert b"".join(p for p, _ in got) == pretty
    assert [final for _, final in got] == [False] * (len(got) - 1) + [True]
    # one piece per array element: the first holds the "[", the last (final) one the "]"
    assert len(got) == 400 and got[-1][0].endswith(b"}\n]") and got[1][0].startswith(b"\n    {") and got[1][0].endswith(b"\n    },")


def test_separator_by_shape():
    assert catalog_memo.separator(b'{"a": 1}\n{"a": 2}\n{"a": 3}\n') == b"\n"
    slack = json.dumps([{"ts": str(i), "user_profile": {"name": "x"}, "text": "t"} for i in range(50)], indent=4)
    assert catalog_memo.separator(slack.encode()) == b"\n    },"
    discord = json.dumps({"guild": {"id": "1"}, "channel": {"id": "2"}, "dateRange": {"after": None},
                          "messages": [{"id": str(i), "author": {"id": "3"}} for i in range(50)]}, indent=2)
    assert catalog_memo.separator(discord.encode()) == b"\n    },"
    assert catalog_memo.separator(json.dumps([{"a": i} for i in range(5)]).encode()) == b"},"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b" ", b"  ", b"    ", b"},", b"}", b"{", b",", b"x", b" " * 17]), max_size=60))
def test_separator_counts_closing_lines_as_a_regex_would(parts):
    import re
    from collections import Counter
    head = b"".join(parts)
    counts = Counter(len(m) for m in re.findall(rb"\n( {0,16})\},", head))  # the rule, read literally
    newlines = head.count(b"\n")
    if newlines >= 2 and (head.startswith(b"{") + head.count(b"\n{")) * 2 > newlines:
        expected = b"\n"
    elif max(counts.values(), default=0) >= 2:
        best = max(counts.values())
        expected = b"\n" + b" " * min(k for k, n in counts.items() if n * 3 >= best * 2) + b"},"
    else:
        expected = b"},"
    assert catalog_memo.separator(head) == expected


def test_the_separator_is_sniffed_again_only_when_the_files_head_changes(monkeypatch):
    sniffed = []
    real = catalog_memo.separator
    monkeypatch.setattr(catalog_memo, "separator", lambda head: sniffed.append(head[:8]) or real(head))

    def read(data: bytes, previous: dict | None) -> tuple[catalog_memo.PieceMemo, list]:
        memo = catalog_memo.PieceMemo(previous)
        blocks = [data[i:i + 50_000] for i in range(0, len(data), 50_000)]
        records = [r for batch in memo.read(LineSegments([]), blocks, lambda w: None, lambda b: bytes(32)) for r in batch]
        return memo, records
    text = b"".join(json.dumps(m).encode() + b"\n" for m in night(3))
    first, records = read(text * 8, None)  # more than the 64 KiB sniffed
    same, again = read(text * 8 + json.dumps(msg("new", 1, "late")).encode() + b"\n", first.current)
    changed, _ = read(b"\n" + text * 8, same.current)  # other first bytes
    assert len(sniffed) == 2 and sniffed[1].startswith(b"\n")  # nights 1 and 3 sniffed, night 2 remembered
    assert again[:len(records)] == records and len(again) == len(records) + 1 and same.parsed == 1  # the new line


def test_a_piece_without_separator_is_cut_at_max_piece(monkeypatch):
    monkeypatch.setattr(catalog_memo, "MAX_PIECE", 100)
    data = b"x" * 1050
    got = list(catalog_memo.pieces([data[:300], data[300:]], sep=b"\n"))
    assert [len(p) for p, _ in got] == [100] * 10 + [50] and got[-1][1]


_TEXT = st.text(alphabet=st.sampled_from(["\0", "\1", "\2", "a", "b", "é", "\ud800", "\U0001f600", "中"]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TEXT, st.one_of(st.integers(-2 ** 70, 2 ** 70), st.sampled_from([0, -1, 1, 255, 256, -256, 2 ** 64 - 1, 2 ** 64, -(2 ** 64)])),
                          _TEXT, st.binary(max_size=3).map(lambda b: b"{" + b + b"}"), st.booleans()),
                max_size=12))
def test_memo_records_sort_as_the_spec_orders_records(records):
    # spec §23.1 orders a part's lines by (conversation, time, id) and then their bytes; the memo
    # keeps each record as one byte string whose bytewise order must be exactly that order
    marks = {line: cut for _, _, _, line, cut in records}  # a line's cut mark is a function of the line
    records = [(c, t, i, line, marks[line]) for c, t, i, line, _ in records]
    kept = [catalog_memo.sortable_record(*r) for r in records]
    assert [catalog_memo.record_line(k) for k in sorted(kept)] == [(line, cut) for *_, line, cut in sorted(records)]


def test_a_memo_record_gives_back_its_line_and_mark():
    line = b'{"a":"x","c":"\\u0000 general","i":"1","x":"\xe4\xb8\xad"}'
    for cut in (False, True):
        assert catalog_memo.record_line(catalog_memo.sortable_record("\0 general", -5, "1\1", line, cut)) == (line, cut)


class WarningSegments(LineSegments):
    """Lines that are not JSON are skipped with a warning."""

    def feed(self, state, data, final, warn):
        self.log.append(len(data))
        lines = (state + data).split(b"\n")
        rest = b"" if final else lines.pop()
        out = []
        for line in lines:
            if line.strip():
                try:
                    out.append(_message(line))
                except ValueError:
                    warn(f"team.chat.jsonl: a line is not JSON: {line[:20]!r}")
        return out, rest


class WarningReader(SegmentedReader):
    def segment_reader(self, files, export, path, warn):
        return WarningSegments(self.fed)


def test_a_bad_record_is_reported_by_every_backup_that_holds_it(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = WarningReader()
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [reader])
    path = src / "team.chat.jsonl"
    for n in range(2):
        write(path, night(n))
        with path.open("a") as f:
            f.write("this is not json\n")
        result = run_backup(repo, BackupOptions(paths=[str(src)]))
        assert result.warnings == ["team.chat.jsonl: a line is not JSON: b'this is not json'"]
    assert len(reader.fed) < len(night(0)) + len(night(1))  # the second night reused pieces


def test_a_memo_is_bounded_and_what_it_leaves_out_is_parsed_again(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    monkeypatch.setattr(catalog_memo, "MEMO_MAX_BYTES", 4000)  # ~30 of the ~300 lines
    reader = SegmentedReader()
    write(src / "team.chat.jsonl", night(0))
    _backup(repo, src, reader, monkeypatch)
    reader.fed.clear()
    lines = night(0)
    lines[0] = msg("general", 0, "an edit in the remembered part", True)
    write(src / "team.chat.jsonl", lines)
    snap = _backup(repo, src, reader, monkeypatch)
    remembered = 4000 // (64 + len(json.dumps(lines[5])) + 1) + 1
    assert len(night(0)) + 1 - remembered - 2 <= len(reader.fed) <= len(night(0)) + 1 - remembered + 2
    assert _all_records(repo, snap) == sorted((m["c"], m["i"], m["x"], m["e"]) for m in lines)


def test_a_damaged_memo_is_only_a_cache_miss(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    write(src / "team.chat.jsonl", night(0))
    _backup(repo, src, reader, monkeypatch)
    with MessageIndex(repo) as index:
        keys = index.cache.keys("memos")
        assert len(keys) == 1
        index.cache.put_many("memos", [(keys[0], b"\0" * 64)])  # fails authentication
    reader.fed.clear()
    write(src / "team.chat.jsonl", night(1))
    snap = _backup(repo, src, reader, monkeypatch)  # no warning: _backup asserts there is none
    assert len(reader.fed) == len(night(1)) + 1  # everything parsed again
    assert _all_records(repo, snap) == sorted((m["c"], m["i"], m["x"], m["e"]) for m in night(1))


def test_a_file_just_backed_up_is_read_from_its_source_only_while_it_is_unchanged(small_chunks_repo, tmp_path,
                                                                                    monkeypatch):
    """The backup's catalogue reads a changed export file from its source rather than decrypting
    it, but only bytes whose size and content hash are the node's: a file changed since (same
    size or not) is read from the repository, and the catalogue is the stored file's."""
    repo, src = small_chunks_repo, tmp_path / "src"
    snap = _nights(repo, src, SegmentedReader(), 1, monkeypatch)
    path = src / "team.chat.jsonl"
    tree = bytes.fromhex(snap.tree)

    def build():
        with BlobWriter(repo) as writer:
            root, stats_ = build_catalog(repo, writer, tree, readers=[SegmentedReader()], read_sources=True)
            writer.flush()
        return root.hex(), stats_.files_read, stats_.sources_read

    assert build() == (snap.catalog, 1, 1)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"lunch", b"LUNCH", 1))  # the same size, other bytes
    assert build() == (snap.catalog, 1, 0)
    path.write_bytes(data + json.dumps(msg("ops", 9999, "later")).encode() + b"\n")
    assert build() == (snap.catalog, 1, 0)
    path.unlink()
    assert build() == (snap.catalog, 1, 0)


def test_memos_not_written_for_a_month_are_dropped(small_chunks_repo, tmp_path, monkeypatch):
    """A memo is kept while its file keeps changing; one not rewritten for MEMO_KEEP_DAYS (its
    file gone, or unchanged since) is dropped at the next catalogued backup."""
    from strongroom.messages import catalog_index
    repo, src = small_chunks_repo, tmp_path / "src"
    day = [20_000]
    monkeypatch.setattr(catalog_index, "_today", lambda: day[0])
    write(src / "old.chat.jsonl", night(0))
    _nights(repo, src, SegmentedReader(), 1, monkeypatch)

    def memos() -> int:
        with MessageIndex(repo) as index:
            return index.memos.count()

    assert memos() == 2
    (src / "old.chat.jsonl").unlink()  # its memo is no longer written; team's is, every night
    for n, day[0] in ((1, 20_010), (2, 20_025), (3, 20_030)):
        write(src / "team.chat.jsonl", night(n))
        _backup(repo, src, SegmentedReader(), monkeypatch)
        assert memos() == 2
    day[0] = 20_031
    write(src / "team.chat.jsonl", night(4))
    _backup(repo, src, SegmentedReader(), monkeypatch)
    assert memos() == 1
    reader = SegmentedReader()  # the one left is team's: its next change parses only what changed
    lines = night(4)
    lines[10] = msg("ops", 10, "one more edit", True)
    write(src / "team.chat.jsonl", lines)
    _backup(repo, src, reader, monkeypatch)
    assert len(reader.fed) == 1
