"""The catalogue built chunk by chunk (spec §23.6): a changed export file is read one repository
chunk at a time through its reader's segment reader, and a chunk read before in the same reader
state is not read again. Small text chunks (64 B .. 1 KiB) make a file of a few hundred messages
span many chunks."""

from __future__ import annotations

import json
import shutil

import pytest

from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.config import Config
from strongroom.messages import catalog_build
from strongroom.messages.catalog_build import build_catalog
from strongroom.messages.catalog_index import MessageIndex, cache_folder
from strongroom.messages.catalog_query import Filters, conversation_records, diff, search, stats
from strongroom.messages.model import Export, Message
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.writer import BlobWriter
from tests.conftest import PASSWORD, WEAK_KDF

PLATFORM = "testchat"


def _message(line: bytes) -> Message:
    d = json.loads(line)
    return Message(PLATFORM, d["c"], d["i"], d["a"], d["t"], d["e"], d["x"], "")


class WholeReader:
    """``*.chat.jsonl``: one JSON message per line; read whole only."""

    platform = PLATFORM

    def find(self, files):
        return [Export(self.platform, p, (p,)) for p in files.paths() if p.endswith(".chat.jsonl")]

    def messages(self, files, export):
        for path in export.files:
            with files.open(path) as f:
                for line in f:
                    if line.strip():
                        yield _message(line)


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


@pytest.fixture
def small_chunks_repo(tmp_path):
    config = Config(chunking=ChunkingProfiles(text=ChunkerParams(64, 256, 1024)))
    repo = Repository.init(LocalStorage(str(tmp_path / "repo")), PASSWORD, config=config, kdf=WEAK_KDF,
                           cache_root=str(tmp_path / "cache"))
    yield repo
    repo.close()


def _backup(repo, src, reader, monkeypatch):
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [reader])
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert not result.warnings
    return result.snapshot


def _all_records(repo, snap) -> list:
    with MessageIndex(repo) as index:
        index.ensure([snap])
        return sorted((r.conversation, r.message_id, r.text, r.edited)
                      for r in search(index, [snap.id], Filters()) for r in [r.record])


def test_segment_catalogue_holds_what_the_whole_file_reader_reads(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    segmented = SegmentedReader()
    for n in range(3):
        write(src / "team.chat.jsonl", night(n))
        snap = _backup(repo, src, segmented, monkeypatch)
        expected = sorted((m["c"], m["i"], m["x"], m["e"]) for m in night(n))
        assert _all_records(repo, snap) == expected
        with MessageIndex(repo) as index:
            index.ensure([snap])
            per_platform = {s.platform: s.messages for s in stats(index, snap.id)}
        assert per_platform == {PLATFORM: len(expected)}
    assert run_check(repo).ok


def test_an_unchanged_chunk_is_not_read_again(small_chunks_repo, tmp_path, monkeypatch):
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    write(src / "team.chat.jsonl", night(0))
    _backup(repo, src, reader, monkeypatch)
    first = len(reader.fed)
    size = (src / "team.chat.jsonl").stat().st_size
    assert sum(reader.fed) == size and first > 20  # every chunk read once, and there are many
    reader.fed.clear()
    lines = night(0)
    lines[150] = msg("ops", 150, "a single edit in the middle", True)
    write(src / "team.chat.jsonl", lines)
    snap = _backup(repo, src, reader, monkeypatch)
    # one edited line touches one or two chunks (content-defined cuts), never the whole file
    assert 1 <= len(reader.fed) <= 3, reader.fed
    assert sum(reader.fed) < size / 5
    with MessageIndex(repo) as index:
        index.ensure(repo.snapshots())
        first_snap = repo.snapshots()[0]
        changes = diff(index, first_snap.id, snap.id)
        assert [(d.conversation, [(a.text, b.text) for a, b in d.edited], d.added, d.deleted) for d in changes] == [
            ("ops", [("message 150 about the deploy plan", "a single edit in the middle")], [], [])]


def test_the_catalogue_does_not_depend_on_the_cache(small_chunks_repo, tmp_path, monkeypatch):
    """A catalogue written with a warm cache (segments reused) equals one written from nothing."""
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    for n in range(3):
        write(src / "team.chat.jsonl", night(n))
        snap = _backup(repo, src, reader, monkeypatch)
    shutil.rmtree(cache_folder(repo))
    reader.fed.clear()
    with BlobWriter(repo) as writer:
        root, stats_ = build_catalog(repo, writer, bytes.fromhex(snap.tree), readers=[reader])
        writer.flush()
    assert stats_.segments_reused == 0 and stats_.segments_read == len(reader.fed) > 20
    assert root.hex() == snap.catalog


def test_segments_of_the_same_chunks_in_another_state_are_read_again(small_chunks_repo, tmp_path, monkeypatch):
    """The cache key holds the reader's state: a chunk that follows a different unfinished line
    is read again, never answered from an entry made in another state."""
    repo, src = small_chunks_repo, tmp_path / "src"
    reader = SegmentedReader()
    lines = night(0)
    write(src / "team.chat.jsonl", lines)
    _backup(repo, src, reader, monkeypatch)
    # the same file behind a longer first line: every cut moves, so nothing may be reused wrongly
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
    assert len(reader.fed) < first  # the second night's unchanged chunks were not parsed again
