"""Grouped blobs (spec §24): small text chunks compressed and sealed together.

Format (pack header v2, index file v2, validation), every reader (load_blob, the fetcher's runs,
check --read-data, prune's repack, repair's salvage, copy), damage confined to one group, and
repositories without groups still written and read exactly as before."""

from __future__ import annotations

import os
import random
import struct

import pytest

from conftest import PASSWORD, WEAK_KDF
from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.forget import run_forget
from strongroom.commands.prune import MaxUnused, PruneOptions, run_prune
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.crypto import sealed
from strongroom.errors import IntegrityError
from strongroom.fetcher import BlobFetcher
from strongroom.indexfile import decode_index, encode_index, PackRecord
from strongroom.pack import (DATA, MAX_GROUP_LENGTH, PACK_VERSION, PACK_VERSION_GROUPS, RANGE, MEMBER, TRAILER,
                             BlobEntry, PackWriter, decode_entries, encode_entries, pack_path, parse_header)
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

SMALL_TEXT = ChunkerParams(1024, 2048, 8192)
WORDS = ("alice bob carol dave reacted :thumbsup: edited the message deploy failed retry tomorrow "
         "channel general random incident postmortem lunch").split()


def make_repo(path, *, group_size: int = 16 * 1024, member_max: int = 8192, pack_size: int = 256 * 1024):
    config = Config(chunking=ChunkingProfiles(SMALL_TEXT, ChunkerParams(64 * 1024, 256 * 1024, 1024 * 1024)),
                    compression_level=3, pack_size=pack_size, group_size=group_size,
                    group_member_max=member_max if group_size else 0)
    return Repository.init(LocalStorage(path), PASSWORD, config=config, kdf=WEAK_KDF)


def chat_text(rng: random.Random, n_lines: int) -> bytes:
    return "".join(f'{{"user": "{rng.choice(WORDS)}", "ts": {rng.randrange(10**9)}, "text": "'
                   f'{" ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 14)))}"}}\n'
                   for _ in range(n_lines)).encode()


def write_tree(root, seed: int, files: int = 30) -> dict[str, bytes]:
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    out = {}
    for i in range(files):
        data = chat_text(rng, rng.randrange(20, 200))
        with open(os.path.join(root, f"c{i}.jsonl"), "wb") as f:
            f.write(data)
        out[f"c{i}.jsonl"] = data
    with open(os.path.join(root, "photo.bin"), "wb") as f:  # binary: never grouped
        f.write(rng.randbytes(300_000))
    return out


def backup(repo, src):
    return run_backup(repo, BackupOptions(paths=[str(src)])).snapshot


def read_tree(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
    return out


def all_entries(repo) -> list[BlobEntry]:
    return [e for pack, _ in repo.index.iter_packs() for e in repo.index.pack_entries(pack)]


# -- format ------------------------------------------------------------------------------------

def test_group_round_trips_through_a_version_2_pack(repo):
    writer = PackWriter(repo.master)
    single = writer.add(b"\x01" * 32, DATA, 0, b"x" * 100, 100)
    members = [(b"\x02" * 32, 10), (b"\x03" * 32, 20), (b"\x04" * 32, 5)]
    grouped = writer.add_group(members, DATA, 0, b"g" * 35)
    name, data = writer.finish()
    assert TRAILER.unpack(data[-TRAILER.size:])[2] == PACK_VERSION_GROUPS
    envelope, entries = parse_header(repo.master, data, len(data), "t")
    assert entries == [single, *grouped]
    assert [(e.member_offset, e.group_length, e.raw_length) for e in grouped] == [(0, 35, 10), (10, 35, 20), (30, 35, 5)]
    assert len({(e.offset, e.length) for e in grouped}) == 1 and grouped[0].length == 35 + 16
    assert single.offset == 0 and grouped[0].offset == 116


def test_packs_without_groups_stay_version_1(repo):
    writer = PackWriter(repo.master)
    writer.add_group([(b"\x05" * 32, 7)], DATA, 0, b"1234567")  # a group of one is a plain blob
    _, data = writer.finish()
    assert TRAILER.unpack(data[-TRAILER.size:])[2] == PACK_VERSION
    assert parse_header(repo.master, data, len(data), "t")[1][0].group_length == 0


def test_entry_lists_refuse_impossible_ranges():
    def ranges(members: list[int]) -> bytes:
        return (struct.pack("<I", 1) + RANGE.pack(DATA, 0, 0, 0, sum(members) + 16, len(members))
                + b"".join(MEMBER.pack(bytes([i]) * 32, n) for i, n in enumerate(members)))
    assert len(decode_entries(ranges([3, 4]), 0, PACK_VERSION_GROUPS, "t")[0]) == 2
    for bad in ([], [3, 0], [MAX_GROUP_LENGTH, 1]):
        with pytest.raises(IntegrityError):
            decode_entries(ranges(bad), 0, PACK_VERSION_GROUPS, "t")
    with pytest.raises(IntegrityError, match="truncated"):
        decode_entries(ranges([3, 4])[:-1], 0, PACK_VERSION_GROUPS, "t")
    with pytest.raises(ValueError):
        encode_entries([BlobEntry(b"\x01" * 32, DATA, 0, 0, 0, 20, 2, 0, 4)], PACK_VERSION)


def test_index_files_are_version_2_only_with_groups(repo):
    plain = [PackRecord("ab" * 32, 1000, b"\x00" * 33, [BlobEntry(b"\x01" * 32, DATA, 1, 0, 0, 50, 80)])]
    grouped = [PackRecord("cd" * 32, 2000, b"\x00" * 33,
                          [BlobEntry(b"\x02" * 32, DATA, 1, 7, 0, 60, 30, 0, 70),
                           BlobEntry(b"\x03" * 32, DATA, 1, 7, 0, 60, 40, 30, 70)])]
    from strongroom.indexfile import open_index, seal_index
    v1 = seal_index(repo.master, plain)
    v2 = seal_index(repo.master, plain + grouped)
    assert (v1[4], v2[4]) == (1, 2)
    assert open_index(repo.master, v2, "t") == (plain + grouped, [])
    assert decode_index(encode_index(plain + grouped, ["ee" * 32]), "t", 2) == (plain + grouped, ["ee" * 32])
    # A version-2 payload read as version 1 is refused, not misread.
    with pytest.raises(IntegrityError):
        decode_index(encode_index(plain + grouped), "t", 1)
    # Readers before §24 accept only version 1 of a sealed index file: the version is checked first.
    with pytest.raises(Exception, match="format version 2 is not supported"):
        sealed.unseal(repo.master, v2[:4], v2, "t")


# -- a repository with groups --------------------------------------------------------------------

@pytest.fixture
def grouped(tmp_path):
    repo = make_repo(tmp_path / "repo")
    contents = write_tree(tmp_path / "src", seed=1)
    snap = backup(repo, tmp_path / "src")
    yield repo, snap, contents
    repo.close()


def test_backup_groups_small_text_chunks_and_restores_them(grouped, tmp_path):
    repo, snap, contents = grouped
    entries = all_entries(repo)
    members = [e for e in entries if e.group_length]
    assert len(members) >= 20
    assert all(e.type == DATA and e.raw_length <= 8192 for e in members)
    assert all(e.group_length == 0 for e in entries if e.raw_length > 8192)  # the photo's chunks
    groups = {(e.offset, e.length) for e in members}
    assert len(groups) < len(members) / 2
    assert run_check(repo, read_data=True).errors == []
    result = run_restore(repo, snap, str(tmp_path / "out"))
    assert result.errors == []
    restored = read_tree(tmp_path / "out")
    prefix = os.path.relpath(tmp_path / "src", "/")
    assert {k: v for k, v in restored.items() if k.endswith(".jsonl")} == {
        os.path.join(prefix, k): v for k, v in contents.items()}
    # Every member also reads alone, and through the fetcher's runs.
    ids = [e.id for e in members]
    assert [repo.load_blob(i) for i in ids] == list(BlobFetcher(repo).fetch_all(ids))


def test_a_group_is_decoded_once_per_run(grouped, monkeypatch):
    repo, _, _ = grouped
    import strongroom.pack as pack_module
    calls = []
    real = pack_module.open_blob
    monkeypatch.setattr(pack_module, "open_blob", lambda *a: calls.append(a[1].offset) or real(*a))
    members = sorted((e for e in all_entries(repo) if e.group_length), key=lambda e: e.offset)
    groups = {e.offset for e in members}
    with BlobFetcher(repo) as fetcher:
        list(fetcher.fetch_all([e.id for e in members]))
    assert sorted(calls) == sorted(groups)


def test_a_damaged_group_fails_exactly_its_members(grouped):
    repo, _, _ = grouped
    by_pack = {}
    for pack, _ in repo.index.iter_packs():
        for e in repo.index.pack_entries(pack):
            by_pack.setdefault(pack, []).append(e)
    pack, entries = next((p, es) for p, es in by_pack.items() if any(e.group_length for e in es))
    victim = next(e for e in entries if e.group_length)
    members = {e.id for e in entries if e.offset == victim.offset}
    path = repo.storage.root / pack_path(pack)
    with open(path, "r+b") as f:
        f.seek(victim.offset + 5)
        byte = f.read(1)
        f.seek(victim.offset + 5)
        f.write(bytes([byte[0] ^ 0x40]))
    result = run_check(repo, read_data=True)
    assert result.errors
    [damaged] = result.damaged_packs
    assert damaged["pack"] == pack
    assert {bytes.fromhex(b) for b in damaged["bad_blobs"]} == members
    for e in entries:
        if e.id in members:
            with pytest.raises(IntegrityError, match="authentic|decrypt|damaged"):
                repo.load_blob(e.id)
        else:
            assert repo.master.blob_id(repo.load_blob(e.id)) == e.id


def test_prune_keeps_every_live_member(tmp_path):
    repo = make_repo(tmp_path / "repo", pack_size=64 * 1024)
    src = tmp_path / "src"
    write_tree(src, seed=1)
    first = backup(repo, src)
    rng = random.Random(9)
    for i in range(0, 30, 3):  # drop some files, change others: groups become partly used
        os.remove(src / f"c{i}.jsonl")
    for i in range(1, 30, 3):
        with open(src / f"c{i}.jsonl", "ab") as f:
            f.write(chat_text(rng, 5))
    second = backup(repo, src)
    expected = read_tree(src)
    run_forget(repo, snapshot_ids=[first.id])
    result = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0), repack_small=True))
    assert result.plan.repack_packs or result.plan.delete_packs
    assert run_check(repo, read_data=True).errors == []
    out = tmp_path / "out"
    assert run_restore(repo, repo.find_snapshot(second.id), str(out)).errors == []
    prefix = os.path.relpath(src, "/")
    assert read_tree(out) == {os.path.join(prefix, k): v for k, v in expected.items()}
    # Groups survive repacking as groups, and a second prune has nothing left to do.
    assert any(e.group_length for e in all_entries(repo))
    again = run_prune(repo, PruneOptions(max_unused=MaxUnused(percent=0)))
    assert again.plan.repack_packs == [] and again.plan.delete_packs == []


# -- repositories without groups ---------------------------------------------------------------

def test_a_repository_without_groups_writes_version_1_as_before(tmp_path):
    repo = make_repo(tmp_path / "repo", group_size=0)
    write_tree(tmp_path / "src", seed=2)
    backup(repo, tmp_path / "src")
    assert all(e.group_length == 0 for e in all_entries(repo))
    for path, _ in repo.storage.list("index"):
        assert repo.storage.load(path)[4] == 1
    for path, size in repo.storage.list("data"):
        assert TRAILER.unpack(repo.storage.load(path, size - TRAILER.size, TRAILER.size))[2] == PACK_VERSION
    assert "group_size" not in repo.config.encode().decode()
    assert run_check(repo, read_data=True).errors == []


def test_old_configs_mean_no_groups():
    doc = Config(group_size=0).encode()
    assert b"group" not in doc
    assert Config.decode(doc).group_size == 0
    assert Config().group_size == 0  # new repositories too, unless init asks for groups
    grouped = Config.decode(Config(group_size=64 * 1024, group_member_max=32 * 1024).encode())
    assert (grouped.group_size, grouped.group_member_max) == (64 * 1024, 32 * 1024)
    with pytest.raises(IntegrityError):
        Config.decode(Config(group_size=512, group_member_max=64).encode())


def test_an_index_cache_of_the_previous_schema_is_rebuilt(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_tree(tmp_path / "src", seed=3, files=5)
    backup(repo, tmp_path / "src")
    ids = [e.id for e in all_entries(repo)]
    cache = repo.index
    with cache._env.begin(write=True) as txn:  # as version 3 left it: an old-layout value
        txn.put(b"schema", b"strongroom index cache 3", db=cache._meta)
        txn.put(ids[0], b"\x00" * 54, db=cache._blobs)
    repo.close()
    repo = Repository.open(LocalStorage(tmp_path / "repo"), PASSWORD)
    try:
        assert all(repo.master.blob_id(repo.load_blob(i)) == i for i in ids)
    finally:
        repo.close()


def test_init_options_set_or_refuse_groups(cli_env, repo_path):
    import subprocess
    from conftest import WEAK_KDF_ARGS, strongroom_command
    bad = subprocess.run([*strongroom_command(), "init", *WEAK_KDF_ARGS, "--group-size", "512"], env=cli_env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--group-size" in bad.stderr
    ok = subprocess.run([*strongroom_command(), "init", *WEAK_KDF_ARGS, "--group-size", "128K",
                         "--group-member-max", "4K"], env=cli_env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:
        assert (repo.config.group_size, repo.config.group_member_max) == (128 * 1024, 4096)
        text = repo.config.chunking.text  # groups come with small text chunks unless told otherwise
        assert (text.min_size, text.avg_size, text.max_size) == (2048, 8192, 32768)


def test_init_without_group_options_makes_no_groups(cli_env, repo_path):
    import subprocess
    from conftest import WEAK_KDF_ARGS, strongroom_command
    done = subprocess.run([*strongroom_command(), "init", *WEAK_KDF_ARGS], env=cli_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:
        assert (repo.config.group_size, repo.config.group_member_max) == (0, 0)
        text = repo.config.chunking.text
        assert (text.min_size, text.avg_size, text.max_size) == (4096, 16384, 65536)


def test_stats_counts_each_member_its_share_of_the_group(grouped):
    from strongroom.commands.stats import run_stats
    repo, snap, _ = grouped
    members = [e for e in all_entries(repo) if e.group_length]
    result = run_stats(repo, [snap.id], mode="raw-data")
    stored = sum(e.length for e in all_entries(repo) if not e.group_length)
    stored += sum(e.length * e.raw_length // e.group_length for e in members)
    assert result.stored_bytes == stored


def test_repair_salvages_the_members_of_intact_groups(grouped):
    from strongroom.commands.repair import salvage_packs
    repo, _, _ = grouped
    pack, entries = next((p, repo.index.pack_entries(p)) for p, _ in repo.index.iter_packs()
                         if len({e.offset for e in repo.index.pack_entries(p) if e.group_length}) >= 2)
    victim = next(e for e in entries if e.group_length)
    lost = {e.id for e in entries if e.offset == victim.offset}
    with open(repo.storage.root / pack_path(pack), "r+b") as f:
        f.seek(victim.offset + 3)
        byte = f.read(1)
        f.seek(victim.offset + 3)
        f.write(bytes([byte[0] ^ 1]))
    result = salvage_packs(repo, [pack])
    assert {bytes.fromhex(b) for b in result.lost} == lost
    assert result.blobs_salvaged == len(entries) - len(lost)
    for e in entries:
        if e.id not in lost:
            assert repo.master.blob_id(repo.load_blob(e.id)) == e.id


def test_a_repository_written_before_groups_reads_and_stays_version_1(tmp_path):
    """tests/fixtures/v1-repository: written by the code before §24 (commit 1ade76d)."""
    import hashlib
    import json
    import shutil
    from pathlib import Path
    fixture = Path(__file__).parent / "fixtures" / "v1-repository"
    manifest = json.loads((fixture / "manifest.json").read_text())
    shutil.copytree(fixture / "repo", tmp_path / "repo")
    with Repository.open(LocalStorage(tmp_path / "repo"), manifest["password"].encode()) as repo:
        assert repo.config.group_size == 0 and repo.config.chunking.text.avg_size == 16384
        assert run_check(repo, read_data=True).errors == []
        [snap] = repo.snapshots()
        assert run_restore(repo, snap, str(tmp_path / "out")).errors == []
        restored = read_tree(tmp_path / "out" / manifest["source"].lstrip("/"))
        assert {k: hashlib.sha256(v).hexdigest() for k, v in restored.items()} == manifest["files"]
        # Backing up more into it with this code keeps it readable by the old code: version 1 only.
        write_tree(tmp_path / "src", seed=5, files=5)
        backup(repo, tmp_path / "src")
        assert all(e.group_length == 0 for e in all_entries(repo))
        assert {repo.storage.load(p)[4] for p, _ in repo.storage.list("index")} == {1}
        for path, size in repo.storage.list("data"):
            assert TRAILER.unpack(repo.storage.load(path, size - TRAILER.size, TRAILER.size))[2] == PACK_VERSION


def test_the_group_memo_is_bounded_and_keeps_the_latest():
    from strongroom.pack import GroupMemo
    memo = GroupMemo(max_bytes=300)
    for i in range(5):
        memo.put(("p", i), b"x" * 50, b"y" * 50)
    assert [memo.get(("p", i)) is not None for i in range(5)] == [False, False, True, True, True]
    memo.get(("p", 2))  # used: now the newest
    memo.put(("p", 5), b"x" * 50, b"y" * 50)
    assert memo.get(("p", 3)) is None and memo.get(("p", 2)) is not None
    big = GroupMemo(max_bytes=10)
    big.put(("p", 0), b"x" * 50, b"y" * 50)  # one group larger than the bound is still held alone
    assert big.get(("p", 0)) is not None



def test_copy_keeps_text_chunks_text_so_the_destination_groups_them(tmp_path):
    from strongroom.commands.copy import CopySelection, run_copy
    write_tree(tmp_path / "src", seed=7)
    with make_repo(tmp_path / "a") as src, make_repo(tmp_path / "b") as dst:
        run_backup(src, BackupOptions(paths=[str(tmp_path / "src")]))
        run_copy(src, dst, CopySelection())
        def members(repo):  # (data blobs in groups, data blobs) by their plaintext length
            data = [e for e in all_entries(repo) if e.type == DATA]
            return sorted(e.raw_length for e in data if e.group_length), sorted(e.raw_length for e in data)
        # (blob ids are keyed per repository: the same chunks, other ids)
        assert members(dst) == members(src) and len(members(src)[0]) > 20  # grouped again at the destination
        assert run_check(dst, read_data=True).errors == []
