"""Chunking guided by the previous version (strongroom.rechunk) gives exactly the chunks of a full
FastCDC pass (chunker.chunk_views), whatever the edit, and skips FastCDC where nothing changed."""

from __future__ import annotations

import io
import random

import blake3
import pytest

from strongroom.chunker import ChunkerParams, chunk_views
from strongroom.rechunk import LOOKAHEAD, PreviousChunks, guided_chunk_views

KEY = bytes(range(32))
SMALL = ChunkerParams(256, 1024, 4096)  # many chunks per test file; buffer boundaries come often


def blob_id(data) -> bytes:
    return blake3.blake3(data, key=KEY).digest()


def previous_chunks(pairs: list[tuple[bytes, int | None]]) -> PreviousChunks:
    """As the backup makes them, with the lengths (here: given) asked for a few at a time."""
    known = dict(pairs)
    return PreviousChunks((i for i, _ in pairs), lambda ids: [known[i] for i in ids])


def full_chunks(data: bytes, params: ChunkerParams, records: bool, buffer_size: int) -> list[bytes]:
    return [bytes(v) for v in chunk_views(io.BytesIO(data), params, buffer=bytearray(buffer_size), records=records)]


def guided(data: bytes, previous: list[bytes], params: ChunkerParams, records: bool, buffer_size: int,
           prefix_size: int = 0) -> tuple[list[bytes], int, bytes]:
    """(chunks, how many were verified rather than cut, content digest)."""
    stream = io.BytesIO(data)
    prefix = stream.read(prefix_size)
    digest = blake3.blake3()
    chunks, reused = [], 0
    for view, chunk_id, was_reused in guided_chunk_views(
            stream, params, previous_chunks([(blob_id(c), len(c)) for c in previous]), blob_id,
            buffer=bytearray(buffer_size),
            prefix=prefix, digest=digest, records=records):
        assert chunk_id == blob_id(view)
        chunks.append(bytes(view))
        reused += was_reused
    return chunks, reused, digest.digest()


def text_records(rng: random.Random, n: int) -> bytes:
    lines = []
    for i in range(n):
        body = " ".join(rng.choice(("hello", "deploy", "ok", "lunch?", "ticket", "🙂", "merge", "see PR"))
                        for _ in range(rng.randrange(2, 30)))
        indent = " " * rng.choice((0, 0, 2, 4))
        lines.append(f'{indent}{{"id": {i}, "user": "u{rng.randrange(50)}", "text": "{body}"}}')
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode()


def edits(rng: random.Random, base: bytes) -> list[tuple[str, bytes]]:
    n = len(base)
    at = rng.randrange(n) if n else 0
    cases = [
        ("identical", base),
        ("append", base + text_records(rng, 40)),
        ("append one byte", base + b"x"),
        ("prepend", text_records(rng, 3) + base),
        ("volatile header", b'{"exported": "2026-11-2%d"}\n' % rng.randrange(10) + base[base.find(b"\n") + 1:]),
        ("insert", base[:at] + b"INSERTED " * rng.randrange(1, 300) + base[at:]),
        ("delete", base[:at] + base[at + rng.randrange(1, 5000):]),
        ("overwrite", base[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + base[at + 64:]),
        ("truncate", base[:at]),
        ("truncate last byte", base[:-1]),
        ("empty", b""),
        ("several edits", base[:n // 4] + b"A" + base[n // 4: n // 2] + base[n // 2 + 100: 3 * n // 4] + b"B" * 999
         + base[3 * n // 4:] + b"tail"),
        ("swap halves", base[n // 2:] + base[: n // 2]),
    ]
    return cases


@pytest.mark.parametrize("records", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_guided_chunks_equal_full_chunking_after_edits(records: bool, seed: int) -> None:
    rng = random.Random(seed)
    base = text_records(rng, rng.choice((0, 1, 5, 200, 2000)))
    buffer_size = rng.choice((2 * SMALL.max_size, 2 * SMALL.max_size + 7, 3 * SMALL.max_size + 1001, 1 << 20))
    previous = full_chunks(base, SMALL, records, buffer_size)
    for name, data in edits(rng, base):
        expected = full_chunks(data, SMALL, records, buffer_size)
        for prefix_size in (0, min(len(data), 300)):
            chunks, _, digest = guided(data, previous, SMALL, records, buffer_size, prefix_size)
            assert chunks == expected, (name, buffer_size, prefix_size)
            assert digest == blake3.blake3(data).digest(), name


@pytest.mark.parametrize("records", [False, True])
def test_binary_content_and_edits_at_every_buffer_boundary(records: bool) -> None:
    rng = random.Random(7)
    base = rng.randbytes(120_000)
    buffer_size = 2 * SMALL.max_size
    previous = full_chunks(base, SMALL, records, buffer_size)
    for at in range(buffer_size - 3, 120_000, buffer_size // 3):
        for data in (base[:at] + b"\0" + base[at:], base[:at] + base[at + 1:], base[:at] + b"\1" + base[at + 1:]):
            assert guided(data, previous, SMALL, records, buffer_size)[0] == full_chunks(data, SMALL, records,
                                                                                          buffer_size)


def test_unchanged_regions_are_verified_not_cut() -> None:
    rng = random.Random(1)
    base = text_records(rng, 3000)
    previous = full_chunks(base, SMALL, False, 1 << 20)
    data = base[:len(base) // 2] + b"EDIT" + base[len(base) // 2:] + b"appended"
    chunks, reused, _ = guided(data, previous, SMALL, False, 1 << 20)
    assert chunks == full_chunks(data, SMALL, False, 1 << 20)
    fresh = len(chunks) - reused
    assert reused >= len(previous) - 4 and fresh <= 5, (reused, fresh, len(previous))


def test_record_mode_recuts_only_near_an_edit() -> None:
    rng = random.Random(2)
    base = text_records(rng, 3000)
    previous = full_chunks(base, SMALL, True, 1 << 20)
    data = base[:len(base) // 2] + b"EDIT" + base[len(base) // 2:]
    chunks, reused, _ = guided(data, previous, SMALL, True, 1 << 20)
    assert chunks == full_chunks(data, SMALL, True, 1 << 20)
    # chunks within max (4 KiB) before the edit cannot be confirmed, and the end of the file
    assert len(chunks) - reused <= 2 * SMALL.max_size // SMALL.min_size + 2


def test_appended_file_reverifies_the_previous_last_chunk_by_chunking() -> None:
    rng = random.Random(3)
    base = rng.randbytes(50_000)
    previous = full_chunks(base, SMALL, False, 1 << 20)
    data = base + rng.randbytes(5000)
    chunks, reused, _ = guided(data, previous, SMALL, False, 1 << 20)
    assert chunks == full_chunks(data, SMALL, False, 1 << 20)
    assert reused == len(previous) - 1  # all but the last, which the end of the file cut


def test_identical_file_is_verified_entirely() -> None:
    base = random.Random(4).randbytes(50_000)
    previous = full_chunks(base, SMALL, True, 1 << 20)
    chunks, reused, _ = guided(base, previous, SMALL, True, 1 << 20)
    assert chunks == previous and reused == len(previous)


def test_default_text_profile_on_a_large_file() -> None:
    params = ChunkerParams(4 * 1024, 16 * 1024, 64 * 1024)
    rng = random.Random(5)
    base = text_records(rng, 40_000)  # ~3 MB
    for records in (False, True):
        previous = full_chunks(base, params, records, 8 << 20)
        data = b'{"exported": "now"}\n' + base[:1_000_000] + b"edited" + base[1_000_010:] + text_records(rng, 50)
        chunks, reused, _ = guided(data, previous, params, records, 8 << 20)
        assert chunks == full_chunks(data, params, records, 8 << 20)
        assert reused >= len(previous) - (16 if records else 6), records


def test_wrong_or_unknown_previous_lengths_only_cost_chunking() -> None:
    rng = random.Random(6)
    base = rng.randbytes(40_000)
    expected = full_chunks(base, SMALL, False, 1 << 20)
    for lie in ([(blob_id(c), None) for c in expected],  # not in the index
                [(blob_id(c), len(c) + 1) for c in expected],  # a wrong length
                [(bytes(32), 100_000)] * 3):  # nonsense
        stream = io.BytesIO(base)
        got = [bytes(v) for v, _, _ in guided_chunk_views(stream, SMALL, previous_chunks(lie), blob_id,
                                                           buffer=bytearray(1 << 20))]
        assert got == expected


def test_previous_chunks_look_ahead_a_bounded_window() -> None:
    ids = [i.to_bytes(32, "big") for i in range(LOOKAHEAD * 2)]
    asked = []
    prev = PreviousChunks(iter(ids), lambda some: asked.extend(some) or [10] * len(some))
    assert prev.peek() == (ids[0], 10, False)
    assert prev.skip_past(ids[5]) and prev.peek() == (ids[6], 10, False)
    assert not prev.skip_past(ids[3])  # behind: not a resync
    assert not prev.skip_past(ids[LOOKAHEAD + 100])  # beyond the window
    assert prev.skip_past(ids[LOOKAHEAD - 1]) and prev.peek()[0] == ids[LOOKAHEAD]
    assert prev.skip_past(ids[LOOKAHEAD + 100]) and prev.peek()[0] == ids[LOOKAHEAD + 101]
    assert prev.peek()[2] is False
    assert prev.skip_past(ids[-2]) and prev.peek() == (ids[-1], 10, True)
    prev.pop()
    assert prev.peek() is None
    # lengths: only near what was peeked at, 16 at a time
    assert asked == ids[:16] + ids[LOOKAHEAD:LOOKAHEAD + 16] + ids[LOOKAHEAD + 101:LOOKAHEAD + 117] + ids[-1:]


def test_a_repeated_previous_chunk_resyncs_to_its_next_occurrence() -> None:
    a, b, c = (bytes([n]) * 32 for n in (1, 2, 3))
    prev = PreviousChunks(iter([a, b, a, c]), lambda some: [10] * len(some))
    assert prev.skip_past(a) and prev.peek()[0] == b
    prev.pop()
    assert prev.skip_past(a) and prev.peek() == (c, 10, True)


# -- in a backup ------------------------------------------------------------------------------------

def _file_chunks(repo, snap, name: bytes) -> list[bytes]:
    stack = [bytes.fromhex(snap.tree)]
    while stack:
        for node in repo.load_tree(stack.pop()):
            if node.name == name:
                return list(repo.file_chunks(node))
            if node.subtree is not None:
                stack.append(node.subtree)
    raise AssertionError(name)


@pytest.mark.parametrize("records", [False, True])
def test_backup_of_changed_files_gives_the_chunks_of_a_forced_backup(repo_path, tmp_path, monkeypatch, records):
    """A nightly export whose files changed in small regions: the backup guided by the parent
    stores exactly the chunk lists that a --force backup (full FastCDC) stores, and verifies most
    chunks instead of cutting them."""
    import strongroom.commands.backup as backup_module
    from strongroom.chunker import ChunkingProfiles
    from strongroom.commands.backup import BackupOptions, run_backup
    from strongroom.config import Config
    from strongroom.repository import Repository
    from strongroom.storage.local import LocalStorage
    from tests.conftest import PASSWORD, WEAK_KDF

    repo = Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF,
                           config=Config(chunking=ChunkingProfiles(records=records)))
    rng = random.Random(11)
    src = tmp_path / "export"
    src.mkdir()
    texts = {f"channel{i}.json".encode(): text_records(rng, 3000) for i in range(3)}
    binary = rng.randbytes(3_000_000)
    for name, data in texts.items():
        (src / name.decode()).write_bytes(data)
    (src / "attachment.bin").write_bytes(binary)
    run_backup(repo, BackupOptions(paths=[str(src)]))

    reused = [0, 0]
    real = backup_module.guided_chunk_views

    def counting(*args, **kwargs):
        for view, chunk_id, was_reused in real(*args, **kwargs):
            reused[was_reused] += 1
            yield view, chunk_id, was_reused
    monkeypatch.setattr(backup_module, "guided_chunk_views", counting)

    edited = {
        b"channel0.json": texts[b"channel0.json"][:-2] + b",\n" + text_records(rng, 20)[2:],  # appended
        b"channel1.json": b'{"exported": "tonight"}\n' + texts[b"channel1.json"],  # a new header line
        b"channel2.json": texts[b"channel2.json"].replace(b'"id": 1500,', b'"id": 1500, "edited": true,'),
    }
    for name, data in edited.items():
        (src / name.decode()).write_bytes(data)
    (src / "attachment.bin").write_bytes(binary[:1_000_000] + b"x" + binary[1_000_000:])
    guided = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    assert reused[True] > 3 * reused[False] > 0
    reused[:] = [0, 0]
    forced = run_backup(repo, BackupOptions(paths=[str(src)], force=True)).snapshot
    assert reused == [0, 0]  # --force: every file chunked afresh
    for name in [*edited, b"attachment.bin"]:
        chunks = _file_chunks(repo, guided, name)
        assert chunks == _file_chunks(repo, forced, name), name
        assert b"".join(repo.load_blob(c) for c in chunks) == (src / name.decode()).read_bytes()
    repo.close()


def test_no_guidance_when_the_profiles_share_chunk_lengths(repo_path, tmp_path, monkeypatch) -> None:
    """If a length could come from either profile, a previous chunk list does not tell which one
    cut it (the file's class may have changed): every changed file is chunked afresh."""
    import strongroom.commands.backup as backup_module
    from strongroom.chunker import ChunkerParams, ChunkingProfiles
    from strongroom.commands.backup import BackupOptions, run_backup
    from strongroom.config import Config
    from strongroom.repository import Repository
    from strongroom.storage.local import LocalStorage
    from tests.conftest import PASSWORD, WEAK_KDF

    overlapping = ChunkingProfiles(ChunkerParams(4096, 16384, 65536), ChunkerParams(32768, 65536, 262144))
    assert not overlapping.distinct() and ChunkingProfiles().distinct()
    repo = Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF, config=Config(chunking=overlapping))
    called = []
    real = backup_module.guided_chunk_views
    monkeypatch.setattr(backup_module, "guided_chunk_views", lambda *a, **k: called.append(1) or real(*a, **k))
    src = tmp_path / "export"
    src.mkdir()
    data = text_records(random.Random(12), 2000)
    (src / "a.json").write_bytes(data)
    run_backup(repo, BackupOptions(paths=[str(src)]))
    (src / "a.json").write_bytes(data + b"more")
    snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    assert called == []
    chunks = _file_chunks(repo, snap, b"a.json")
    assert b"".join(repo.load_blob(c) for c in chunks) == data + b"more"
    repo.close()


@pytest.mark.slow
@pytest.mark.parametrize("records", [False, True])
def test_random_edit_sequences(records: bool) -> None:
    """Soak: 300 random versions, each derived from the last by a few random edits."""
    rng = random.Random(99 + records)
    data = text_records(rng, 800)
    previous = full_chunks(data, SMALL, records, 3 * SMALL.max_size)
    for _ in range(300):
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data) + 1)
            kind = rng.randrange(3)
            if kind == 0:
                data = data[:at] + text_records(rng, rng.randrange(1, 5)) + data[at:]
            elif kind == 1:
                data = data[:at] + data[at + rng.randrange(1, 3000):]
            else:
                data = data[:at] + rng.randbytes(rng.randrange(1, 20)) + data[at + 10:]
        buffer_size = rng.choice((2 * SMALL.max_size, 3 * SMALL.max_size + 17, 1 << 16))
        expected = full_chunks(data, SMALL, records, buffer_size)
        assert guided(data, previous, SMALL, records, buffer_size, rng.randrange(0, 600))[0] == expected
        previous = expected
