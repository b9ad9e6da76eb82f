"""The per-file content hash (spec "Trees", ``content_hash``: BLAKE3 of the whole file): a file
whose metadata changed but whose bytes did not is not chunked again; a file whose bytes changed
(even at the same size) is."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

import strongroom.commands.backup as backup_module
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.restore import run_restore
from strongroom.errors import IntegrityError
from strongroom.tree import FILE, Node, decode_tree, encode_tree


def file_node(repo, snap, name: bytes) -> Node:
    """The node called ``name`` anywhere in the snapshot (names are unique in these tests)."""
    stack = [bytes.fromhex(snap.tree)]
    while stack:
        for node in repo.load_tree(stack.pop()):
            if node.name == name:
                return node
            if node.subtree is not None:
                stack.append(node.subtree)
    raise AssertionError(f"{name!r} not in the snapshot")


@pytest.fixture
def src(tmp_path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "same.json").write_bytes(b'{"messages": [' + b'{"text": "hello"},' * 5000 + b"{}]}")
    (root / "edit.txt").write_bytes(b"line one\n" * 3000)
    (root / "empty").write_bytes(b"")
    return root


def count_chunking(monkeypatch) -> list[bytes]:
    """Record the path of every file that goes through the chunker."""
    chunked: list[bytes] = []
    real = backup_module._Backup.store_stream

    def spy(self, stream, path, *rest):
        chunked.append(os.path.basename(path))
        return real(self, stream, path, *rest)

    monkeypatch.setattr(backup_module._Backup, "store_stream", spy)
    return chunked


def touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_content_hash_is_the_blake3_of_the_whole_file(repo, src):
    snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    node = file_node(repo, snap, b"same.json")
    data = (src / "same.json").read_bytes()
    assert node.content_hash == blake3.blake3(data).digest()
    assert file_node(repo, snap, b"empty").content_hash == blake3.blake3(b"").digest()


def test_touched_but_identical_file_is_not_chunked_again(repo, src, monkeypatch, tmp_path):
    first = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    touch(src / "same.json")
    touch(src / "edit.txt")
    with open(src / "edit.txt", "r+b") as f:  # same size, one byte different
        f.seek(5000)
        f.write(b"X")
    chunked = count_chunking(monkeypatch)
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert chunked == [b"edit.txt"]
    second = result.snapshot
    assert result.summary.files_changed == 2 and result.summary.files_unchanged == 1
    assert result.summary.bytes_read == (src / "same.json").stat().st_size + (src / "edit.txt").stat().st_size
    same_before, same_after = file_node(repo, first, b"same.json"), file_node(repo, second, b"same.json")
    assert same_after.content == same_before.content and same_after.content_hash == same_before.content_hash
    assert same_after.mtime_ns == same_before.mtime_ns + 10**9
    assert file_node(repo, second, b"edit.txt").content_hash != file_node(repo, first, b"edit.txt").content_hash
    target = tmp_path / "out"
    run_restore(repo, second, str(target))
    restored = target / str(src).lstrip("/")
    for name in ("same.json", "edit.txt", "empty"):
        assert (restored / name).read_bytes() == (src / name).read_bytes()


def test_force_chunks_every_file_again(repo, src, monkeypatch):
    run_backup(repo, BackupOptions(paths=[str(src)]))
    touch(src / "same.json")
    chunked = count_chunking(monkeypatch)
    run_backup(repo, BackupOptions(paths=[str(src)], force=True))
    assert sorted(chunked) == [b"edit.txt", b"empty", b"same.json"]


def test_metadata_skip_carries_the_content_hash_over(repo, src):
    first = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    second = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    assert file_node(repo, second, b"edit.txt").content_hash == file_node(repo, first, b"edit.txt").content_hash


def test_tree_encoding_of_content_hash():
    node = Node(name=b"a", type=FILE, size=3, content=[b"\x01" * 32], content_hash=b"\xab" * 32)
    encoded = encode_tree([node])
    assert encoded == (b'{"nodes":[{"content":["' + b"01" * 32 + b'"],"content_hash":"' + b"ab" * 32
                       + b'","name":"a","size":3,"type":"file"}]}')
    assert decode_tree(encoded, "t") == [node]


@pytest.mark.parametrize("bad", ['"abcd"', "17", '"' + "zz" * 32 + '"'])
def test_malformed_content_hash_is_rejected(bad):
    tree = b'{"nodes":[{"content_hash":' + bad.encode() + b',"name":"a","type":"file"}]}'
    with pytest.raises(IntegrityError, match="malformed tree"):
        decode_tree(tree, "t")


def test_content_hash_on_a_directory_is_rejected():
    tree = b'{"nodes":[{"content_hash":"' + b"ab" * 32 + b'","name":"d","subtree":"' + b"00" * 32 + b'","type":"dir"}]}'
    with pytest.raises(IntegrityError, match="malformed tree"):
        decode_tree(tree, "t")
