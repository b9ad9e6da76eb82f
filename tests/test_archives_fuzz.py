"""Damaged archives never crash a backup: each mutation is either stored member-wise and then
rebuilt byte for byte, or refused (NotExpandable) and stored plain by the caller."""

from __future__ import annotations

import hashlib
import random
import tempfile

import pytest

from archive_helpers import member_bytes, write_tar, write_zip
from strongroom.archives.detect import detect
from strongroom.archives.rebuild import rebuild
from strongroom.archives.source import NotExpandable
from strongroom.archives.store import store_archive
from strongroom.tree import FILE, Node


class _MemoryRepo:
    """What store_archive and rebuild need: blobs by (unkeyed, test-only) id."""

    def __init__(self) -> None:
        self.blobs: dict[bytes, bytes] = {}

    def _put(self, data: bytes) -> bytes:
        blob_id = hashlib.sha256(data).digest()
        self.blobs[blob_id] = data
        return blob_id

    def store(self, stream, what):
        ids, total = [], 0
        while data := stream.read(50_000):
            ids.append(self._put(data))
            total += len(data)
        return ids, [], total

    def add_tree(self, data):
        return self._put(data)

    def load_blob(self, blob_id):
        return self.blobs[blob_id]

    def fetch_all(self, ids):
        return (self.blobs[i] for i in ids)


def _store(data: bytes):
    repo = _MemoryRepo()
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        kind = detect(f.fileno())
        if kind is None:
            return None, repo
        node = Node(name=b"x", type=FILE, size=len(data))
        return store_archive(f.fileno(), node, kind, repo).node, repo


def _samples() -> dict[str, bytes]:
    members = {f"c/{i}.json": member_bytes(f"f{i}", 3000 * (i + 1)) for i in range(4)}
    with tempfile.TemporaryDirectory() as d:
        write_zip(f"{d}/a.zip", members, dirs=("c",))
        write_tar(f"{d}/a.tar", members, dirs=("c",), symlinks={"l": "c/0.json"})
        zip_bytes, tar_bytes = open(f"{d}/a.zip", "rb").read(), open(f"{d}/a.tar", "rb").read()
    import gzip
    import zstandard
    return {"zip": zip_bytes, "tar": tar_bytes, "tar.gz": gzip.compress(tar_bytes, 9, mtime=0),
            "tar.zst": zstandard.ZstdCompressor(level=3).compress(tar_bytes)}


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tar.zst"])
def test_mutated_archives_are_rebuilt_exactly_or_refused(kind):
    original = _samples()[kind]
    rng = random.Random(kind)
    outcomes = {"stored": 0, "refused": 0, "not an archive": 0}
    for trial in range(120):
        data = bytearray(original)
        if trial % 3 == 0:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
        try:
            node, repo = _store(data)
        except NotExpandable:
            outcomes["refused"] += 1
            continue
        if node is None:
            outcomes["not an archive"] += 1
            continue
        outcomes["stored"] += 1
        rebuilt = b"".join(rebuild(repo, repo, node.archive, "x"))
        if node.archive.fidelity == "identical":
            assert rebuilt == data
    assert outcomes["refused"] > 10 and outcomes["stored"] + outcomes["refused"] + outcomes["not an archive"] == 120


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tar.zst"])
def test_unmutated_samples_rebuild_exactly(kind):
    data = _samples()[kind]
    node, repo = _store(data)
    assert node.archive.fidelity == "identical"
    assert b"".join(rebuild(repo, repo, node.archive, "x")) == data
