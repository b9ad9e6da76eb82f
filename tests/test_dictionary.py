"""Per-repository zstd dictionaries for text blobs (spec: "Compression dictionaries")."""

from __future__ import annotations

import json
import os
import random

import pytest
import zstandard

from strongroom import dictionary
from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.keys import add_key
from strongroom.compression import NONE, ZSTD, compress_blob_with, decompress_blob
from strongroom.config import Config
from strongroom.crypto import sealed
from strongroom.errors import IntegrityError
from strongroom.pack import DATA, TREE, PackWriter, parse_header
from strongroom.repository import Repository
from strongroom.storage.local import LocalStorage

from conftest import PASSWORD, WEAK_KDF

SMALL_TEXT = ChunkingProfiles(ChunkerParams(1024, 4096, 16384), ChunkingProfiles().binary)
WORDS = ["deploy", "failed", "again", "thanks", "ticket", "meeting", "你好", "世界", "review", "merged", "ok", "lunch"]


def chat_export(seed: int, messages: int) -> bytes:
    """Slack-like JSON: what dictionaries are for (repeated keys, user ids, phrases)."""
    rng = random.Random(seed)
    posts = [{"type": "message", "user": f"U{rng.randrange(40):05d}", "ts": f"{1700000000 + i * 37}.{i:06d}",
              "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 25))),
              "reactions": [{"name": "thumbsup", "count": rng.randrange(1, 4)}] if i % 7 == 0 else []}
             for i in range(messages)]
    return json.dumps(posts, ensure_ascii=False, indent=1).encode()


def write_tree(root, seed: int, messages: int) -> dict[str, bytes]:
    os.makedirs(root, exist_ok=True)
    files = {f"channel{i}.json": chat_export(seed * 10 + i, messages) for i in range(3)}
    files["photo.jpg"] = b"\xff\xd8\xff" + random.Random(seed).randbytes(50_000)
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    return files


def _all_entries(repo: Repository):
    out = []
    for name, _ in repo.storage.list("data"):
        data = repo.storage.load(name)
        out += parse_header(repo.master, data, len(data), name)[1]
    return out


def read_file(repo: Repository, snapshot_tree: bytes, name: str) -> bytes:
    node = next(n for n in repo.load_tree(snapshot_tree) if n.name == name.encode())
    return b"".join(repo.load_blob(i) for i in repo.file_chunks(node))


def backup(repo: Repository, root) -> bytes:
    result = run_backup(repo, BackupOptions(paths=[str(root)]))
    tree = bytes.fromhex(result.snapshot.tree)
    for part in os.path.abspath(root).strip("/").split("/"):
        tree = next(n for n in repo.load_tree(tree) if n.name == part.encode()).subtree
    return tree


def test_first_backup_trains_a_dictionary_and_later_text_blobs_use_it(repo, tmp_path):
    src = tmp_path / "export"
    write_tree(src, 1, 2500)
    first = backup(repo, src)
    ids = repo.dictionaries.ids()
    assert len(ids) == 1 and [n for n, _ in repo.storage.list("dicts")] == [f"dicts/{ids[0]:08x}"]
    files = write_tree(src, 2, 2600)  # the next night: new messages
    second = backup(repo, src)
    entries = _all_entries(repo)
    with_dict = [e for e in entries if e.dictionary]
    assert with_dict and all(e.dictionary == ids[0] and e.type == DATA and e.compression == ZSTD for e in with_dict)
    assert all(e.dictionary == 0 for e in entries if e.type == TREE)
    for name, data in files.items():
        assert read_file(repo, second, name) == data
    assert read_file(repo, first, "photo.jpg")[:3] == b"\xff\xd8\xff"
    check = run_check(repo, read_data=True)
    assert check.ok and check.damaged_packs == [] and check.blobs_read == len(entries)


def test_dictionary_makes_the_second_night_smaller(tmp_path):
    sizes = {}
    for size in (0, dictionary.DEFAULT_SIZE):
        path = tmp_path / f"repo{size}"
        config = Config(dictionary_size=size, chunking=SMALL_TEXT, group_size=0)  # dictionaries alone
        with Repository.init(LocalStorage(str(path)), PASSWORD, kdf=WEAK_KDF, config=config,
                             cache_root=str(tmp_path / f"cache{size}")) as repo:
            write_tree(tmp_path / "src", 1, 2500)
            backup(repo, tmp_path / "src")
            before = sum(s for _, s in repo.storage.list("data"))
            write_tree(tmp_path / "src", 2, 2600)
            backup(repo, tmp_path / "src")
            sizes[size] = sum(s for _, s in repo.storage.list("data")) - before
            assert bool(repo.dictionaries.ids()) == bool(size)
    assert sizes[dictionary.DEFAULT_SIZE] < sizes[0] * 0.9


def test_write_only_writer_uses_the_dictionary(repo, repo_path, tmp_path):
    src = tmp_path / "export"
    write_tree(src, 1, 2500)
    backup(repo, src)
    (dict_id,) = repo.dictionaries.ids()
    add_key(repo, b"writer", WEAK_KDF, write_only=True)
    files = write_tree(src, 3, 2600)
    with Repository.open(LocalStorage(repo_path), b"writer") as writer:
        assert writer.write_only and writer.dictionaries.ids() == [dict_id]
        run_backup(writer, BackupOptions(paths=[str(src)]))
    with Repository.open(LocalStorage(repo_path), PASSWORD) as full:
        tree = backup(full, src)  # unchanged: reads the write-only writer's trees
        assert read_file(full, tree, "channel0.json") == files["channel0.json"]
        assert run_check(full, read_data=True).ok


def test_repository_without_dictionaries_writes_none(tmp_path):
    with Repository.init(LocalStorage(str(tmp_path / "r")), PASSWORD, kdf=WEAK_KDF,
                         config=Config(dictionary_size=0)) as repo:
        write_tree(tmp_path / "src", 1, 2500)
        backup(repo, tmp_path / "src")
        assert repo.dictionaries.ids() == [] and list(repo.storage.list("dicts")) == []
        assert all(e.dictionary == 0 for e in _all_entries(repo))


def test_training_is_deterministic_and_the_id_is_keyed(repo):
    samples = [chat_export(i, 30) for i in range(60)]
    a = dictionary.train(samples, 16 * 1024)
    assert a == dictionary.train(samples, 16 * 1024) and a[:4] == b"\x37\xa4\x30\xec" and len(a) <= 16 * 1024
    assert dictionary.train(samples[:3], 16 * 1024) is None  # too little to learn from
    other = Repository.init(LocalStorage(str(repo.storage.root) + "-2"), PASSWORD, kdf=WEAK_KDF)
    assert dictionary.dictionary_id(repo.master, a) == dictionary.dictionary_id(repo.master, a) != 0
    assert dictionary.dictionary_id(repo.master, a) != dictionary.dictionary_id(other.master, a)
    other.close()


def test_reader_verifies_the_dictionary_and_refuses_a_missing_one(repo):
    content = dictionary.train([chat_export(i, 30) for i in range(60)], 8192)
    dict_id = repo.dictionaries.save(content)
    assert repo.dictionaries.save(content) == dict_id  # idempotent
    assert repo.dictionaries.get(dict_id).as_bytes() == content
    fresh = Repository.open(LocalStorage(repo.storage.root), PASSWORD)
    # An authentic dictionary stored under another id's name is refused.
    fresh.storage.store(dictionary.dictionary_path(dict_id ^ 1), fresh.storage.load(dictionary.dictionary_path(dict_id)))
    with pytest.raises(IntegrityError, match="does not match its id"):
        fresh.dictionaries.get(dict_id ^ 1)
    with pytest.raises(IntegrityError, match="missing"):
        fresh.dictionaries.get(0x12345678 if dict_id != 0x12345678 else 7)
    fresh.close()


def test_decompression_is_capped_and_needs_the_dictionary():
    samples = [chat_export(i, 30) for i in range(60)]
    zdict = zstandard.ZstdCompressionDict(dictionary.train(samples, 8192))
    data = samples[0]
    code, dict_id, payload = compress_blob_with(data, 3, 5, zdict)
    assert (code, dict_id) == (ZSTD, 5) and len(payload) < len(compress_blob_with(data, 3, 0, None)[2])
    assert decompress_blob(code, payload, len(data), "b", 5, lambda i: zdict) == data
    with pytest.raises(IntegrityError, match="did not decompress full frame"):  # capped at the recorded length
        decompress_blob(code, payload, len(data) - 1, "b", 5, lambda i: zdict)
    with pytest.raises(IntegrityError, match=f"decompressed to {len(data)} bytes, expected {len(data) + 1}"):
        decompress_blob(code, payload, len(data) + 1, "b", 5, lambda i: zdict)
    with pytest.raises(IntegrityError, match="cannot be read here"):
        decompress_blob(code, payload, len(data), "b", 5)
    with pytest.raises(IntegrityError, match="uncompressed"):
        decompress_blob(NONE, data, len(data), "b", 5, lambda i: zdict)
    assert compress_blob_with(os.urandom(4096), 3, 5, zdict)[:2] == (NONE, 0)  # raw: no dictionary


def test_pack_header_allows_a_dictionary_only_with_zstd(repo):
    for compression, ok in ((ZSTD, True), (NONE, False)):
        packer = PackWriter(repo.master)
        packer.add(b"\1" * 32, DATA, compression, b"x" * 100, 100, 9)
        name, data = packer.finish()
        if ok:
            assert parse_header(repo.master, data, len(data), "p")[1][0].dictionary == 9
        else:
            with pytest.raises(IntegrityError, match="dictionary"):
                parse_header(repo.master, data, len(data), "p")


def test_config_key_is_optional_and_additive():
    off = Config(id="ab" * 32, created="x", dictionary_size=0)
    assert b"dictionary_size" not in off.encode()
    assert Config.decode(off.encode()).dictionary_size == 0
    on = Config(id="ab" * 32, created="x")
    assert json.loads(on.encode())["compression"] == {"algorithm": "zstd", "level": 3,
                                                      "dictionary_size": dictionary.DEFAULT_SIZE}
    assert Config.decode(on.encode()).dictionary_size == dictionary.DEFAULT_SIZE
    bad = json.loads(on.encode())
    bad["compression"]["dictionary_size"] = 10
    with pytest.raises(IntegrityError, match="dictionary size"):
        Config.decode(json.dumps(bad).encode())


def test_dictionary_objects_are_shared_objects():
    assert sealed.MAGIC_DICTIONARY in sealed.SHARED_MAGICS


def test_repacking_keeps_dictionary_blobs_readable(repo, tmp_path):
    """salvage (repair packs) and prune copy payloads as they are: the dictionary id must go along."""
    from strongroom.commands.forget import run_forget
    from strongroom.commands.prune import PruneOptions, run_prune
    from strongroom.commands.repair import salvage_packs
    src = tmp_path / "export"
    write_tree(src, 1, 2500)
    backup(repo, src)
    files = write_tree(src, 2, 2600)
    tree = backup(repo, src)
    packs = {name.rsplit("/", 1)[1] for name, _ in repo.storage.list("data")}
    with_dict = {name for name in packs if any(e.dictionary for e in repo.index.pack_entries(name))}
    assert with_dict
    result = salvage_packs(repo, sorted(with_dict))
    assert result.blobs_lost == 0 and result.blobs_salvaged > 0
    assert any(e.dictionary for name in result.new_packs for e in repo.index.pack_entries(name))
    oldest = sorted(repo.snapshots(), key=lambda s: s.time)[0]
    run_forget(repo, snapshot_ids=[oldest.id])
    run_prune(repo, PruneOptions(repack_small=True))
    for name, data in files.items():
        assert read_file(repo, tree, name) == data
    assert run_check(repo, read_data=True).ok


def test_check_reports_a_damaged_dictionary(repo, repo_path, tmp_path):
    src = tmp_path / "export"
    write_tree(src, 1, 2500)
    backup(repo, src)
    write_tree(src, 2, 2600)
    backup(repo, src)
    (dict_id,) = repo.dictionaries.ids()
    path = os.path.join(repo_path, "dicts", f"{dict_id:08x}")
    data = bytearray(open(path, "rb").read())
    data[100] ^= 1
    with open(path, "wb") as f:
        f.write(data)
    with Repository.open(LocalStorage(repo_path), PASSWORD) as fresh:
        result = run_check(fresh, read_data=True)
        assert result.errors[0] == f"dictionary {dict_id:08x}: authentication failed (data corrupted or tampered with)"
        # every blob compressed with it is reported as damaged, none is misread
        bad = [b for p in result.damaged_packs for b in p["bad_blobs"]]
        dict_blobs = {e.id.hex() for name, _ in fresh.index.iter_packs() for e in fresh.index.pack_entries(name)
                      if e.dictionary == dict_id}
        assert dict_blobs and set(bad) == dict_blobs
        assert all(f"dictionary {dict_id:08x}: authentication failed" in e for e in result.errors[1:]
                   if e.startswith("pack "))


def test_backup_with_a_damaged_dictionary_goes_on_without_it(repo, repo_path, tmp_path):
    src = tmp_path / "export"
    write_tree(src, 1, 2500)
    backup(repo, src)
    (dict_id,) = repo.dictionaries.ids()
    path = os.path.join(repo_path, "dicts", f"{dict_id:08x}")
    with open(path, "r+b") as f:
        f.seek(60)
        f.write(b"\0\0\0\0")
    files = write_tree(src, 2, 2600)
    with Repository.open(LocalStorage(repo_path), PASSWORD) as fresh:
        tree = backup(fresh, src)
        assert fresh.dictionaries.ids() == [dict_id]  # no second dictionary trained
        assert read_file(fresh, tree, "channel1.json") == files["channel1.json"]
