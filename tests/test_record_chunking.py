"""Record-boundary chunking (spec §7.4): the config flag, `init --record-boundaries`, and backups
whose text chunks end at record boundaries and restore byte for byte."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS, strongroom_command
from strongroom.chunker import ChunkerParams, ChunkingProfiles, chunk_stream, record_cut
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.errors import IntegrityError
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

SMALL_TEXT = ChunkerParams(256, 1024, 4096)


def jsonl(n: int, edit: int | None = None) -> bytes:
    return b"".join(b'{"id":%d,"author":"u%d","text":"%s"}\n'
                    % (i, i % 5, (b"EDITED " if i == edit else b"") + b"message %d " % i * (1 + i % 9))
                    for i in range(n))


def test_config_flag_round_trip():
    on = Config(chunking=ChunkingProfiles(records=True))
    doc = json.loads(on.encode())
    assert doc["chunking"]["records"] is True
    assert Config.decode(on.encode()).chunking.records is True
    off = Config()
    assert "records" not in json.loads(off.encode())["chunking"]  # older configs stay byte-identical
    assert Config.decode(off.encode()).chunking.records is False


@pytest.mark.parametrize("bad", ["1", '"yes"', "null"])
def test_config_flag_must_be_a_boolean(bad):
    doc = Config().encode().replace(b'"chunking":{', b'"chunking":{"records":' + bad.encode() + b",")
    with pytest.raises(IntegrityError, match="records"):
        Config.decode(doc)


def test_record_cut_rules():
    data = b"x" * 300 + b"\n    {\n" + b"y" * 50 + b"\n{\n" + b"z" * 40 + b"\n        {" + b"w" * 100
    # the shallowest opener (indent 0) wins over a later, deeper one
    assert record_cut(data, 0, len(data), 256) == data.index(b"\n{\n") + 1
    # no opener after min: the last line feed
    assert record_cut(b"a" * 300 + b"\nbb\ncc", 0, 306, 256) == 304
    # nothing to move to: the FastCDC cut stays
    assert record_cut(b"a" * 400, 0, 400, 256) == 400
    # a boundary before offset min - 1 of the chunk is not used
    assert record_cut(b"a" * 10 + b"\n{" + b"b" * 300, 0, 312, 256) == 312
    # one at exactly min - 1 is (the chunk is then exactly min long)
    assert record_cut(b"a" * 255 + b"\n{" + b"b" * 100, 0, 357, 256) == 256


def test_an_edited_record_changes_one_chunk_of_whole_records():
    before, after = jsonl(600), jsonl(600, edit=300)
    changed = {}
    for records in (False, True):
        old = set(chunk_stream(io.BytesIO(before), SMALL_TEXT, records=records))
        new = list(chunk_stream(io.BytesIO(after), SMALL_TEXT, records=records))
        assert b"".join(new) == after
        changed[records] = [c for c in new if c not in old]
    assert len(changed[True]) == 1 and b"EDITED" in changed[True][0]
    assert changed[True][0].startswith(b'{"id":') and changed[True][0].endswith(b"\n")
    assert len(changed[False]) == 1 and not changed[False][0].startswith(b'{"id":')  # plain cuts: mid-record


def test_backup_with_record_boundaries_restores_exactly(tmp_path):
    config = Config(chunking=ChunkingProfiles(SMALL_TEXT, ChunkerParams(256, 1024, 4096), records=True))
    src = tmp_path / "src"
    src.mkdir()
    (src / "export.jsonl").write_bytes(jsonl(2000))
    (src / "photo.bin").write_bytes(bytes(range(256)) * 40)
    with Repository.init(LocalStorage(tmp_path / "repo"), PASSWORD, kdf=WEAK_KDF, config=config) as repo:
        snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
        (node,) = [n for n in repo.load_tree(_subtree(repo, snap, src)) if n.name == b"export.jsonl"]
        chunks = [repo.load_blob(i) for i in repo.file_chunks(node)]
        assert b"".join(chunks) == (src / "export.jsonl").read_bytes()
        # each chunk ends at a line end, unless it had no line feed from offset min - 1 on
        assert all(c.endswith(b"\n") or b"\n" not in c[SMALL_TEXT.min_size - 1:] for c in chunks)
        assert sum(c.endswith(b"\n") for c in chunks) > len(chunks) // 2 > 20
        run_restore(repo, snap, str(tmp_path / "out"))
    restored = tmp_path / "out" / str(src).lstrip("/")
    for name in ("export.jsonl", "photo.bin"):
        assert (restored / name).read_bytes() == (src / name).read_bytes()


def _subtree(repo, snap, path) -> bytes:
    tree = bytes.fromhex(snap.tree)
    for part in str(path).strip("/").split("/"):
        (node,) = [n for n in repo.load_tree(tree) if n.name == part.encode()]
        tree = node.subtree
    return tree


@pytest.mark.parametrize("flag, expected", [([], False), (["--record-boundaries"], True),
                                            (["--no-record-boundaries"], False)])
def test_init_flag(cli_env, repo_path, flag, expected):
    proc = subprocess.run(strongroom_command() + ["init", *WEAK_KDF_ARGS, *flag], env=cli_env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    with Repository.open(LocalStorage(repo_path), PASSWORD) as repo:
        assert repo.config.chunking.records is expected
