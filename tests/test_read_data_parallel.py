"""check --read-data's parallel reader (verify_packs: whole packs, blobs in worker batches) must
find exactly what the sequential segment reader (read_pack) finds, for every kind of damage, and
hold no more pack bytes than its cap."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from strongroom.commands import read_data
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.read_data import PackReport, read_pack, verify_packs
from strongroom.compression import NONE, ZSTD
from strongroom.config import Config
from strongroom.pack import DATA, PackWriter, pack_path
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.testing.damage import flip_byte, pack_regions, truncate

from conftest import PASSWORD, WEAK_KDF, StoppedChild


@pytest.fixture
def packed(repo_path, tmp_path):
    """Eight packs of ~64 KiB, each with many small (compressed, dictionary-free) text blobs and a
    few incompressible ones."""
    source = tmp_path / "src"
    source.mkdir()
    for i in range(8):
        lines = b"".join(b"%d:%d message %d from user%d\n" % (i, n, n * 7919 % 100_003, n % 13) for n in range(3000))
        (source / f"chat{i}.txt").write_bytes(lines)
        (source / f"photo{i}.bin").write_bytes(os.urandom(20_000))
    repo = Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF, config=Config(pack_size=64 * 1024))
    run_backup(repo, BackupOptions(paths=[str(source)]))
    yield repo
    repo.close()


def stored_packs(repo) -> dict[str, int]:
    return {name.rsplit("/", 1)[1]: size for name, size in repo.storage.list("data")}


def summary(report: PackReport) -> tuple:
    return (report.name, report.size, report.missing, report.blobs_ok, report.problems, report.bad_blobs)


def both_ways(repo) -> tuple[list[tuple], list[tuple]]:
    packs = sorted(stored_packs(repo).items())
    parallel = [summary(r) for r in verify_packs(repo, packs, threads=2, processes=2)]
    sequential = [summary(read_pack(repo, name, size)) for name, size in packs]
    return parallel, sequential


def pack_file(repo, name: str) -> Path:
    return Path(repo.storage.root) / pack_path(name)


def many_blob_pack(repo) -> str:
    return max(stored_packs(repo), key=lambda p: len(repo.index.pack_entries(p)))


@pytest.fixture(params=["default", "tiny batches and cap", "two processes"])
def sizes(request, monkeypatch):
    if request.param == "tiny batches and cap":  # one blob per batch, one pack held at a time
        monkeypatch.setattr(read_data, "BATCH_BYTES", 1)
        monkeypatch.setattr(read_data, "IN_FLIGHT_BYTES", 1)
    if request.param == "two processes":  # a forked copy verifies part of every round of ~3 packs
        if not hasattr(os, "fork"):
            pytest.skip("needs fork")
        monkeypatch.setattr(read_data, "FORK_MIN_BYTES", 1)
        monkeypatch.setattr(read_data, "ROUND_BYTES", 150 * 1024)
    return request.param


class CountedChildren(read_data.Forked):
    finished: list[bool] = []

    def wait(self) -> bool:
        done = super().wait()
        CountedChildren.finished.append(done)
        return done


@pytest.mark.parametrize("child", ["finishes", "fails"])
def test_a_forked_copy_verifies_part_of_the_packs_with_the_same_findings(packed, monkeypatch, child):
    monkeypatch.setattr(read_data, "FORK_MIN_BYTES", 1)
    monkeypatch.setattr(read_data, "ROUND_BYTES", 150 * 1024)
    monkeypatch.setattr(read_data, "Forked", CountedChildren)
    monkeypatch.setattr(CountedChildren, "finished", [])
    if child == "fails":
        def failing(view, packs, threads, out):
            raise RuntimeError("a bug")
        monkeypatch.setattr(read_data, "_child_verify", failing)
    victim = many_blob_pack(packed)
    flip_byte(pack_file(packed, victim), pack_regions(pack_file(packed, victim))["blobs"][0] + 3)
    truncate(pack_file(packed, min(p for p in stored_packs(packed) if p != victim)), 100)
    parallel, sequential = both_ways(packed)
    assert parallel == sequential
    assert sum(1 for s in parallel if s[4] or s[5] or s[2]) == 2  # the damaged pack and the truncated one
    rounds, held = [[]], 0  # packs in name order, a round closed once it holds ROUND_BYTES
    for _, size in sorted(stored_packs(packed).items()):
        rounds[-1].append(size)
        held += size
        if held >= 150 * 1024:
            rounds.append([])
            held = 0
    assert len(CountedChildren.finished) == sum(1 for r in rounds if len(r) >= 2) >= 1  # a child per shared round
    assert set(CountedChildren.finished) == {child == "finishes"}


def test_healthy_repository_reads_every_blob_once(packed, sizes):
    parallel, sequential = both_ways(packed)
    assert parallel == sequential
    assert len(parallel) == len(stored_packs(packed)) >= 6
    assert sum(s[3] for s in parallel) == sum(len(packed.index.pack_entries(p)) for p in stored_packs(packed))
    assert all(not s[4] and not s[5] and not s[2] for s in parallel)
    assert [s[1] for s in parallel] == [size for _, size in sorted(stored_packs(packed).items())]


@pytest.mark.parametrize("region, where", [("blobs", 0), ("blobs", -1), ("header", 0.5), ("envelope", -1),
                                           ("trailer", 0)])
def test_every_damage_is_found_the_same_way(packed, sizes, region, where):
    victim = many_blob_pack(packed)
    start, end = pack_regions(pack_file(packed, victim))[region]
    offset = end - 1 if where == -1 else start + int((end - start) * where)
    flip_byte(pack_file(packed, victim), offset)
    parallel, sequential = both_ways(packed)
    assert parallel == sequential
    damaged = [s for s in parallel if s[4] or s[5]]
    assert [s[0] for s in damaged] == [victim]
    assert "content does not match its name" in damaged[0][4]
    if region == "blobs":  # exactly one ciphertext fails to authenticate (a group: each of its
        # members, spec §24); the others verify
        entries = packed.index.pack_entries(victim)
        hit = {e.id for e in entries if e.offset <= offset < e.offset + e.length}
        assert damaged[0][4] == ["content does not match its name"]
        assert {b for b, _ in damaged[0][5]} == hit
        assert all("authentication failed" in why for _, why in damaged[0][5])
        assert damaged[0][3] == len(entries) - len(hit)
    else:  # the header is unreadable: the index's record stands in, and every blob still verifies
        assert damaged[0][4][0].startswith("header unreadable") and damaged[0][5] == []
        assert damaged[0][3] == len(packed.index.pack_entries(victim))


def test_authentic_blobs_that_do_not_decode_or_match_their_id(packed, sizes):
    """A writer with the key can seal a blob whose id or compression lies: the MAC passes, the
    later steps must still catch it."""
    writer = PackWriter(packed.master)
    good = b"a blob that is what it claims" * 10
    writer.add(packed.master.blob_id(good), DATA, NONE, good, len(good))
    writer.add(bytes(32), DATA, NONE, good, len(good))  # wrong id
    writer.add(packed.master.blob_id(good + b"!"), DATA, ZSTD, b"not a zstd frame", 100)  # bad frame
    writer.add(packed.master.blob_id(good), DATA, NONE, good, len(good) + 1)  # wrong length
    name, data = writer.finish()
    packed.storage.store(pack_path(name), data)
    parallel = [summary(r) for r in verify_packs(packed, [(name, len(data))])]
    assert parallel == [summary(read_pack(packed, name, len(data)))]
    (_, size, missing, ok, problems, bad) = parallel[0]
    assert (size, missing, ok, problems) == (len(data), False, 1, [])
    assert [why.split(": ", 1)[1] for _, why in bad] == [
        "content does not match its id", "cannot decompress (error when determining content size)",
        f"stored length {len(good)} differs from recorded {len(good) + 1}"]


def test_truncated_and_missing_packs(packed, sizes):
    names = sorted(stored_packs(packed))
    listed = stored_packs(packed)  # sizes as listed before the damage
    truncate(pack_file(packed, names[1]), -100)
    os.remove(pack_file(packed, names[2]))
    packs = sorted(listed.items())
    parallel = [summary(r) for r in verify_packs(packed, packs)]
    sequential = [summary(read_pack(packed, n, s)) for n, s in packs]
    assert parallel == sequential
    by_name = {s[0]: s for s in parallel}
    assert by_name[names[2]][2] is True  # missing
    assert by_name[names[1]][1] == listed[names[1]] - 100
    assert f"short read at offset {listed[names[1]] - 100} of {listed[names[1]]}" in by_name[names[1]][4]


def test_large_packs_are_read_in_segments(packed, monkeypatch):
    """A pack above WHOLE_PACK_LIMIT is never loaded whole: the segment reader handles it."""
    victim = many_blob_pack(packed)
    start, end = pack_regions(pack_file(packed, victim))["blobs"]
    flip_byte(pack_file(packed, victim), (start + end) // 2)
    sequential = both_ways(packed)[1]
    monkeypatch.setattr(read_data, "WHOLE_PACK_LIMIT", 1000)
    monkeypatch.setattr(read_data, "SEGMENT", 4096)
    ranges = []
    load = packed.storage.load

    def watched(name, offset=0, length=None):
        ranges.append(length)
        return load(name, offset, length)
    monkeypatch.setattr(packed.storage, "load", watched)
    parallel = [summary(r) for r in verify_packs(packed, sorted(stored_packs(packed).items()))]
    assert parallel == sequential
    assert None not in ranges and max(ranges) <= 64 * 1024  # the header's tail, then 4 KiB segments
    assert ranges.count(4096) > len(stored_packs(packed))


def test_pack_bytes_held_stay_under_the_cap(packed, monkeypatch):
    sizes = stored_packs(packed)
    cap = 2 * max(sizes.values())
    monkeypatch.setattr(read_data, "IN_FLIGHT_BYTES", cap)
    lock = threading.Lock()
    held = [0, 0]  # now, most
    load = packed.storage.load

    def counting(name, offset=0, length=None):
        data = load(name, offset, length)
        with lock:
            held[0] += len(data)
            held[1] = max(held[1], held[0])
        return data
    monkeypatch.setattr(packed.storage, "load", counting)
    yielded = 0
    for report in verify_packs(packed, sorted(sizes.items())):
        with lock:
            held[0] -= report.size
        yielded += 1
    assert yielded == len(sizes)
    assert held[0] == 0
    assert 0 < held[1] <= cap


def test_check_reports_a_damaged_blob_once_with_its_files(packed, sizes):
    victim = many_blob_pack(packed)
    start, end = pack_regions(pack_file(packed, victim))["blobs"]
    flip_byte(pack_file(packed, victim), start + 10)
    hit = {e.id.hex() for e in packed.index.pack_entries(victim) if e.offset <= start + 10 < e.offset + e.length}
    result = run_check(packed, read_data=True)
    assert not result.ok
    assert result.packs_read == len(stored_packs(packed))
    assert result.blobs_read == sum(len(packed.index.pack_entries(p)) for p in stored_packs(packed))
    assert [d["pack"] for d in result.damaged_packs] == [victim]
    # each blob of the damaged ciphertext (a group's members, spec §24) once, with every file using one
    assert sorted(result.damaged_packs[0]["bad_blobs"]) == sorted(hit)
    from strongroom.commands.ls import walk
    from strongroom.tree import FILE
    [snap] = packed.snapshots()
    files = sorted(os.fsdecode(e.path) for e in walk(packed, bytes.fromhex(snap.tree))
                   if e.node.type == FILE and any(c.hex() in hit for c in packed.file_chunks(e.node)))
    assert sorted(a.path for a in result.affected) == files and files
    assert all(a.reason.endswith("is damaged or its pack is missing") for a in result.affected)


@pytest.fixture
def dictionary_packed(repo_path, tmp_path):
    """Packs of ~64 KiB over two nights of chat JSON: the second night's text blobs are
    compressed with the dictionary the first night trained."""
    from test_dictionary import write_tree
    with Repository.init(LocalStorage(repo_path), PASSWORD, kdf=WEAK_KDF, config=Config(pack_size=64 * 1024)) as repo:
        for night in (1, 2):
            write_tree(tmp_path / "src", night, 2500)
            run_backup(repo, BackupOptions(paths=[str(tmp_path / "src")]))
        assert repo.dictionaries.ids()
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:  # nothing loaded yet
        yield repo


@pytest.mark.parametrize("case", ["healthy", "damaged dictionary", "more dictionaries than a reader holds",
                                  "a dictionary not resolved"])
def test_a_forked_copy_reads_dictionary_blobs_as_the_main_process(dictionary_packed, repo_path, monkeypatch, case):
    repo = dictionary_packed
    monkeypatch.setattr(read_data, "FORK_MIN_BYTES", 1)
    monkeypatch.setattr(read_data, "ROUND_BYTES", 1 << 40)  # one round
    monkeypatch.setattr(read_data, "Forked", CountedChildren)
    monkeypatch.setattr(CountedChildren, "finished", [])
    shared: list[str] = []

    class Recorded(read_data._Resolved):
        def __init__(self, repo, names):
            shared.extend(names)
            super().__init__(repo, names)
    monkeypatch.setattr(read_data, "_Resolved", Recorded)
    (dict_id,) = repo.dictionaries.ids()
    if case == "damaged dictionary":
        flip_byte(Path(repo_path) / "dicts" / f"{dict_id:08x}", 100)
    if case == "more dictionaries than a reader holds":
        monkeypatch.setattr(read_data, "CACHE_SIZE", 0)
    if case == "a dictionary not resolved":  # as if a header named one the index does not
        resolving = read_data._ResolvedDictionaries
        monkeypatch.setattr(read_data, "_ResolvedDictionaries", lambda dictionaries, ids: resolving(dictionaries, set()))
    parallel, sequential = both_ways(repo)
    assert parallel == sequential
    with_dictionary = [e.id for p in stored_packs(repo) for e in repo.index.pack_entries(p) if e.dictionary]
    bad = [blob for s in parallel for blob, _ in s[5]]
    assert with_dictionary and sorted(bad) == (sorted(with_dictionary) if case == "damaged dictionary" else [])
    child_reads_dictionary_blobs = any(e.dictionary for p in shared for e in repo.index.pack_entries(p))
    assert shared and child_reads_dictionary_blobs
    assert CountedChildren.finished == {"healthy": [True], "damaged dictionary": [True],
                                        "more dictionaries than a reader holds": [],
                                        "a dictionary not resolved": [False]}[case]


def test_an_interrupted_check_leaves_no_child_and_no_scratch_file(packed, monkeypatch, tmp_path):
    """Ctrl-C in the main process while the forked copy verifies: the copy is ended and reaped,
    its report file removed."""
    import time
    monkeypatch.setattr(read_data, "FORK_MIN_BYTES", 1)
    monkeypatch.setattr(read_data, "ROUND_BYTES", 1 << 40)
    main, child = os.getpid(), StoppedChild(tmp_path)
    verify = read_data._verify_in_threads

    def slow_copy_interrupted_main(repo, packs, threads, on_bytes):
        if os.getpid() != main:  # the copy: says who it is, then takes its time
            child.announce()
            time.sleep(60)
        child.wait()
        raise KeyboardInterrupt
        yield from verify(repo, packs, threads, on_bytes)  # (a generator, like the real one)
    monkeypatch.setattr(read_data, "_verify_in_threads", slow_copy_interrupted_main)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(verify_packs(packed, sorted(stored_packs(packed).items()), processes=2))
    assert time.monotonic() - started < 40  # not the copy's minute
    child.assert_gone(packed.scratch_folder(), "check-share-")
