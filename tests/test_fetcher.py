"""BlobFetcher: blobs come back verified and in request order, neighbours in a pack are read
with one storage load (a *run*), and damage or a vanished pack is handled as for single reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom import fetcher as fetcher_mod
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.restore import run_restore
from strongroom.errors import IntegrityError
from strongroom.fetcher import BlobFetcher
from strongroom.pack import DATA
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.testing.damage import flip_byte
from strongroom.writer import BlobWriter

from conftest import PASSWORD


class CountingStorage:
    """Wraps a storage and records every load as (name, offset, length)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.loads: list[tuple[str, int, int | None]] = []

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.loads.append((name, offset, length))
        return self.inner.load(name, offset, length)

    def data_loads(self) -> list[tuple[str, int, int | None]]:
        return [load for load in self.loads if load[0].startswith("data/")]

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


def store_blobs(repo: Repository, blobs: list[bytes]) -> list[bytes]:
    with BlobWriter(repo) as writer:
        ids = [writer.add(DATA, blob)[0] for blob in blobs]
        writer.flush()
    return ids


def counting(repo: Repository) -> CountingStorage:
    repo.storage = CountingStorage(repo.storage)
    return repo.storage


def pack_file(repo: Repository, blob_id: bytes) -> Path:
    pack = repo.index.lookup(blob_id).pack
    return Path(repo.storage.root) / "data" / pack[:2] / pack


@pytest.fixture
def blobs() -> list[bytes]:
    return [bytes([i]) + os.urandom(3000 + 100 * i) for i in range(20)]  # incompressible, all distinct


def test_consecutive_blobs_are_read_with_one_load(repo, blobs):
    ids = store_blobs(repo, blobs)
    storage = counting(repo)
    with BlobFetcher(repo) as fetcher:
        assert list(fetcher.fetch_all(ids)) == blobs
    loads = storage.data_loads()
    assert len(loads) == 1
    first, last = repo.index.lookup(ids[0]).entry, repo.index.lookup(ids[-1]).entry
    assert loads[0][1:] == (first.offset, last.offset + last.length - first.offset)


def test_request_order_is_kept_and_backwards_steps_start_new_runs(repo, blobs):
    ids = store_blobs(repo, blobs)
    storage = counting(repo)
    order = list(range(19, -1, -1))  # every step goes backwards in the pack
    with BlobFetcher(repo) as fetcher:
        assert list(fetcher.fetch_all([ids[i] for i in order])) == [blobs[i] for i in order]
    assert len(storage.data_loads()) == 20


def test_small_gaps_are_read_through_and_repeats_share_a_run(repo, blobs):
    ids = store_blobs(repo, blobs)
    storage = counting(repo)
    wanted = [0, 2, 2, 5, 9, 9, 19]  # skips a few blobs (far below the gap limit), repeats some
    with BlobFetcher(repo) as fetcher:
        assert list(fetcher.fetch_all([ids[i] for i in wanted])) == [blobs[i] for i in wanted]
    assert len(storage.data_loads()) == 1


def test_a_gap_beyond_the_limit_starts_a_new_run(repo, blobs, monkeypatch):
    ids = store_blobs(repo, blobs)
    entries = [repo.index.lookup(i).entry for i in ids]
    # Allow exactly the gap of skipping blob 1, not that of skipping blobs 3 and 4.
    monkeypatch.setattr(fetcher_mod, "MAX_GAP_BYTES", entries[1].length)
    storage = counting(repo)
    with BlobFetcher(repo) as fetcher:
        assert list(fetcher.fetch_all([ids[0], ids[2], ids[5], ids[6]])) == [blobs[0], blobs[2], blobs[5], blobs[6]]
    assert [load[1] for load in storage.data_loads()] == [entries[0].offset, entries[5].offset]


def test_runs_are_capped_in_size(repo, blobs, monkeypatch):
    ids = store_blobs(repo, blobs)
    entries = [repo.index.lookup(i).entry for i in ids]
    monkeypatch.setattr(fetcher_mod, "MAX_RUN_BYTES", entries[0].length + entries[1].length + entries[2].length)
    storage = counting(repo)
    with BlobFetcher(repo) as fetcher:
        assert list(fetcher.fetch_all(ids[:7])) == blobs[:7]
    assert [load[1] for load in storage.data_loads()] == [entries[0].offset, entries[3].offset, entries[5].offset]


def test_look_ahead_is_bounded_by_bytes(repo, blobs, monkeypatch):
    ids = store_blobs(repo, blobs)
    monkeypatch.setattr(fetcher_mod, "MAX_RUN_BYTES", 8000)  # two or three blobs per run
    storage = counting(repo)
    with BlobFetcher(repo, max_bytes=10_000) as fetcher:
        stream = fetcher.fetch_all(ids)
        assert next(stream) == blobs[0]
        # runs are asked for until more than 10 kB are in flight: two runs, not all eight
        assert 1 <= len(storage.data_loads()) <= 2
        assert list(stream) == blobs[1:]


def test_a_damaged_blob_inside_a_run_fails_after_the_blobs_before_it(repo, blobs):
    ids = store_blobs(repo, blobs)
    victim = repo.index.lookup(ids[7]).entry
    flip_byte(pack_file(repo, ids[7]), victim.offset + 10)
    got = []
    with BlobFetcher(repo) as fetcher:
        with pytest.raises(IntegrityError, match=f"blob {ids[7].hex()[:16]} .*authentication failed"):
            for blob in fetcher.fetch_all(ids):
                got.append(blob)
        assert got == blobs[:7]
        # the neighbours are fine on their own: only the damaged blob fails
        assert list(fetcher.fetch_all(ids[:7] + ids[8:])) == blobs[:7] + blobs[8:]


def test_a_truncated_pack_fails_the_blobs_cut_off(repo, blobs):
    ids = store_blobs(repo, blobs)
    path = pack_file(repo, ids[0])
    cut = repo.index.lookup(ids[12]).entry.offset + 5
    with open(path, "r+b") as f:
        f.truncate(cut)
    with BlobFetcher(repo) as fetcher:
        assert list(fetcher.fetch_all(ids[:12])) == blobs[:12]
        with pytest.raises(IntegrityError, match="short read"):
            list(fetcher.fetch_all(ids[10:14]))


def test_a_run_whose_pack_vanished_reads_the_blobs_from_their_new_pack(repo, blobs, repo_path, tmp_path):
    ids = store_blobs(repo, blobs)
    other = Repository.open(LocalStorage(repo_path), PASSWORD, cache_root=str(tmp_path / "other-cache"))
    lost = pack_file(repo, ids[0])
    lost.unlink()
    repo.forget_missing_packs({lost.name})  # as a backup does when it notices: the chunks are stored again
    assert store_blobs(repo, blobs) == ids
    assert pack_file(repo, ids[0]) != lost
    storage = counting(other)  # its cache still places every blob in the lost pack
    with BlobFetcher(other) as fetcher:
        assert list(fetcher.fetch_all(ids)) == blobs
    assert lost.name in other.index.missing_packs()
    healed = pack_file(repo, ids[0]).name
    names = [load[0].rsplit("/", 1)[1] for load in storage.data_loads()]
    assert names[0] == lost.name  # one attempt at the whole run, then each blob from its new pack
    assert names[1:] == [healed] * 20
    other.close()


def test_restore_fails_only_the_file_with_the_damaged_chunk(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(fetcher_mod, "MAX_RUN_BYTES", 8 << 20)  # each file is one run
    source = tmp_path / "src"
    source.mkdir()
    # Incompressible binary files of 2+ chunks each (the largest chunk is 4 MiB), back to back in one pack.
    contents = {name: os.urandom(4_500_000) for name in ("a.bin", "b.bin", "c.bin")}
    for name, data in contents.items():
        (source / name).write_bytes(data)
    snap = run_backup(repo, BackupOptions(paths=[str(source)])).snapshot
    chunks = {name: list(_file_chunks(repo, snap, source, name)) for name in contents}
    assert len(chunks["b.bin"]) >= 2
    victim = repo.index.lookup(chunks["b.bin"][1]).entry  # inside b's run, not its first blob
    flip_byte(pack_file(repo, chunks["b.bin"][1]), victim.offset + victim.length // 2)
    storage = counting(repo)
    result = run_restore(repo, snap, str(tmp_path / "out"))
    base = tmp_path / "out" / str(source).lstrip("/")
    assert result.files == 2
    assert result.errors == [f"{source}/b.bin: blob {chunks['b.bin'][1].hex()[:16]} in pack "
                             f"{repo.index.lookup(chunks['b.bin'][1]).pack[:16]}: authentication failed "
                             "(data corrupted or tampered with)"]
    assert (base / "a.bin").read_bytes() == contents["a.bin"]
    assert (base / "c.bin").read_bytes() == contents["c.bin"]
    assert not (base / "b.bin").exists()
    pack = repo.index.lookup(chunks["a.bin"][0]).pack
    assert all(repo.index.lookup(c).pack == pack for ids in chunks.values() for c in ids)
    # Runs span file boundaries: the pack is read front to back in ranges of at most 8 MiB, each once.
    loads = [load[1:] for load in storage.data_loads() if pack in load[0]]  # (trees are in another pack)
    all_ids = [c for name in ("a.bin", "b.bin", "c.bin") for c in chunks[name]]
    first, last = repo.index.lookup(all_ids[0]).entry, repo.index.lookup(all_ids[-1]).entry
    assert loads[0][0] == first.offset and sum(length for _, length in loads) == last.offset + last.length - first.offset
    assert all(a + n == b for (a, n), (b, _) in zip(loads, loads[1:]))
    assert all(length <= 8 << 20 for _, length in loads) and len(loads) < len(all_ids)


def _file_chunks(repo, snap, source: Path, name: str):
    tree_id = bytes.fromhex(snap.tree)
    for part in [*source.parts[1:], name]:
        node = next(n for n in repo.load_tree(tree_id) if n.name == part.encode())
        tree_id = node.subtree
    return repo.file_chunks(node)
