"""The LMDB index cache loaded in bulk from raw index payloads (no Python object per blob)."""

from __future__ import annotations

import random

import pytest

import strongroom.index as index_module
from strongroom.errors import IntegrityError
from strongroom.index import IndexCache
from strongroom.indexfile import PackRecord, decode_index, decode_index_raw, encode_index
from strongroom.pack import BlobEntry


def make_packs(rng: random.Random, packs: int, blobs: int) -> list[PackRecord]:
    out = []
    for _ in range(packs):
        entries = [BlobEntry(rng.randbytes(32), rng.choice((0, 1)), rng.choice((0, 1, 2)), rng.randrange(3),
                             100 + i * 5000, 4000 + i, 9000 + i) for i in range(blobs)]
        out.append(PackRecord(rng.randbytes(32).hex(), 100 + blobs * 5000, rng.randbytes(rng.choice((0, 52))), entries))
    return out


@pytest.fixture
def cache(tmp_path):
    c = IndexCache(tmp_path / "cache")
    yield c
    c.close()


def test_raw_decoding_matches_the_object_decoding():
    packs = make_packs(random.Random(1), 3, 7)
    payload = encode_index(packs, ["ab" * 32])
    raw, supersedes = decode_index_raw(payload, "x")
    assert supersedes == ["ab" * 32]
    objects, _ = decode_index(payload, "x")
    assert [(n.hex(), size, env) for n, size, env, _ in raw] == [(p.name, p.size, p.envelope) for p in objects]
    assert [len(block) for *_, block in raw] == [7 * 62] * 3  # widened to the cache record (group fields)


@pytest.mark.parametrize("cut", [1, 40, 100, -1])
def test_raw_decoding_rejects_truncated_payloads(cut):
    payload = encode_index(make_packs(random.Random(2), 2, 3))
    with pytest.raises(IntegrityError, match="truncated|malformed"):
        decode_index_raw(payload[:cut] if cut > 0 else payload + b"\0", "x")


def test_bulk_load_serves_every_blob_and_pack(cache, monkeypatch):
    monkeypatch.setattr(index_module, "TXN_ENTRIES", 10)  # many commits
    packs = make_packs(random.Random(3), 6, 9)
    raw, _ = decode_index_raw(encode_index(packs), "x")
    cache.add_index_file_raw("file1", raw)
    assert cache.known_index_files() == {"file1"}
    assert cache.counts() == (54, 6)
    for p in packs:
        assert cache.pack_info(p.name) == (p.size, p.envelope)
        assert cache.pack_entries(p.name) == p.entries
        found = cache.lookup_many([e.id for e in p.entries])
        assert [(loc.pack, loc.entry) for loc in found] == [(p.name, e) for e in p.entries]


def test_first_location_of_a_blob_wins_and_a_pack_listed_twice_is_merged(cache):
    rng = random.Random(4)
    (pack,) = make_packs(rng, 1, 4)
    (other,) = make_packs(rng, 1, 2)
    shared = BlobEntry(pack.entries[0].id, 0, 0, 0, 100, 4000, 4000)
    other.entries[0] = shared  # the same blob stored in a second pack
    cache.add_index_file("a", [pack])
    cache.add_index_file("b", [other])
    assert cache.lookup(shared.id).pack == pack.name
    # the pack again, listed with one entry more (as a repair might): offsets merge, in order
    extra = BlobEntry(rng.randbytes(32), 0, 0, 0, 50, 10, 10)
    again = PackRecord(pack.name, pack.size, pack.envelope, [pack.entries[2], extra])
    cache.add_index_file("c", [again])
    assert cache.pack_entries(pack.name) == [extra] + pack.entries
    assert cache.counts() == (4 + 1 + 1, 2)


def test_entries_of_a_missing_pack_are_left_out(cache):
    packs = make_packs(random.Random(5), 2, 3)
    cache.set_missing_packs([packs[0].name])
    cache.add_index_file("a", packs)
    assert cache.lookup(packs[0].entries[0].id) is None
    assert cache.lookup(packs[1].entries[0].id).pack == packs[1].name
    assert cache.pack_entries(packs[0].name) == []


def test_bulk_load_equals_loading_file_by_file(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module.BulkLoader, "COMMIT_EVERY", 7)
    monkeypatch.setattr(index_module.BulkLoader, "READ_BUFFER", 300)
    rng = random.Random(6)
    files = {f"f{i}": make_packs(rng, 3, 5) for i in range(4)}
    files["f2"][1].entries[0] = files["f0"][0].entries[3]  # one blob in two packs of two files
    missing = files["f3"][2].name
    one_by_one, bulk = IndexCache(tmp_path / "a"), IndexCache(tmp_path / "b")
    try:
        for c in (one_by_one, bulk):
            c.set_missing_packs([missing])
        loader = bulk.bulk_loader()
        for name, packs in files.items():
            one_by_one.add_index_file(name, packs)
            loader.add(name, decode_index_raw(encode_index(packs), name)[0])
        assert bulk.known_index_files() == set()  # names only once every blob is in
        loader.finish()
        assert bulk.known_index_files() == one_by_one.known_index_files() == set(files)
        assert bulk.counts() == one_by_one.counts() == (4 * 3 * 5 - 1 - 5, 11)
        ids = [e.id for packs in files.values() for p in packs for e in p.entries]
        assert bulk.lookup_many(ids) == one_by_one.lookup_many(ids)
        assert bulk.lookup(files["f0"][0].entries[3].id).pack == files["f0"][0].name
        for packs in files.values():
            for p in packs:
                assert bulk.pack_entries(p.name) == one_by_one.pack_entries(p.name)
        assert not list((tmp_path / "b").glob("strongroom-rebuild-*"))  # run files removed
    finally:
        one_by_one.close()
        bulk.close()


def test_repository_rebuilds_a_lost_cache_in_bulk(repo, tmp_path, monkeypatch):
    from strongroom.commands.backup import BackupOptions, run_backup
    import strongroom.repository as repository_module
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(random.Random(i).randbytes(5000))
        run_backup(repo, BackupOptions(paths=[str(src)]))
    before = repo.index.counts()
    files = repo.index.known_index_files()
    assert len(files) == 3
    monkeypatch.setattr(repository_module, "BULK_LOAD_MIN_FILES", 2)
    used = []
    real = IndexCache.bulk_loader
    monkeypatch.setattr(IndexCache, "bulk_loader", lambda self: used.append(1) or real(self))
    repo.index.clear()
    assert repo.sync_index() == 3
    assert used == [1]
    assert repo.index.counts() == before and repo.index.known_index_files() == files
    assert repo.sync_index() == 0


def test_has_all(cache):
    packs = make_packs(random.Random(7), 1, 3)
    cache.add_index_file("a", packs)
    ids = [e.id for e in packs[0].entries]
    assert cache.has_all(ids) and cache.has_all([])
    assert not cache.has_all(ids + [b"\0" * 32])
