"""Back up random directory trees, restore them, and compare everything that is restored.

The repository uses tiny chunk sizes (text 64/256/1024, binary 256/1024/4096) so multi-chunk
files and files with more than MAX_INLINE_CHUNKS chunks (chunk-list blobs) are cheap.
Restored layout: each backed-up path lands at target/<absolute path without its leading />.
"""

from __future__ import annotations

import itertools
import os
import random
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PASSWORD, WEAK_KDF
from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.ls import list_snapshot
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.repository import Repository
from strongroom.storage import LocalStorage
from strongroom.tree import DIR, FILE, MAX_INLINE_CHUNKS, SYMLINK

SMALL_CHUNKS = ChunkingProfiles(ChunkerParams(64, 256, 1024), ChunkerParams(256, 1024, 4096))
BINARY_MAX = 4096  # all-zero data is cut into chunks of exactly the binary max size


@pytest.fixture
def small_repo(tmp_path):
    r = Repository.init(LocalStorage(tmp_path / "smallrepo"), PASSWORD, kdf=WEAK_KDF,
                        config=Config(chunking=SMALL_CHUNKS))
    yield r
    r.close()


# -- building trees on disk ------------------------------------------------------------------


@dataclass
class FileSpec:
    content: bytes
    mode: int
    mtime_ns: int


@dataclass
class LinkSpec:
    target: bytes
    mtime_ns: int


@dataclass
class DirSpec:
    children: dict[bytes, object] = field(default_factory=dict)
    mode: int = 0o755
    mtime_ns: int = 1_600_000_000_123_456_789


def make_content(kind: str, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if kind == "zeros":
        return bytes(size)
    if kind == "binary":
        return rng.randbytes(size)
    if kind == "text":
        words = ["hello", "world", "strongroom", "backup", "日本語", "café", "\n", "{\"k\": 1}", "42"]
        out = []
        n = 0
        while n < size:
            w = rng.choice(words) + " "
            out.append(w)
            n += len(w.encode())
        return "".join(out).encode()[:size] if size else b""
    if kind == "repeat":  # the same block many times: repeated chunk ids inside one file
        block = rng.randbytes(4096)
        return (block * (size // 4096 + 1))[:size]
    raise AssertionError(kind)


def create(path: bytes, spec: object) -> None:
    """Create ``spec`` at ``path`` (bytes); metadata is applied bottom-up, directories last."""
    if isinstance(spec, FileSpec):
        with open(path, "wb") as f:
            f.write(spec.content)
        os.chmod(path, spec.mode)
        os.utime(path, ns=(spec.mtime_ns, spec.mtime_ns))
    elif isinstance(spec, LinkSpec):
        os.symlink(spec.target, path)
        os.utime(path, ns=(spec.mtime_ns, spec.mtime_ns), follow_symlinks=False)
    else:
        assert isinstance(spec, DirSpec)
        os.mkdir(path)
        for name, child in spec.children.items():
            create(os.path.join(path, name), child)
        os.chmod(path, spec.mode)
        os.utime(path, ns=(spec.mtime_ns, spec.mtime_ns))


def count_files(spec: object) -> int:
    if isinstance(spec, FileSpec):
        return 1
    if isinstance(spec, DirSpec):
        return sum(count_files(c) for c in spec.children.values())
    return 0


def assert_same_tree(src: bytes, dst: bytes) -> int:
    """Compare two trees entry by entry (type, bytes, link target, mode, mtime_ns); return entries seen."""
    a, b = os.lstat(src), os.lstat(dst)
    where = os.fsdecode(src)
    assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), where
    assert a.st_mtime_ns == b.st_mtime_ns, where
    seen = 1
    if stat.S_ISLNK(a.st_mode):
        assert os.readlink(src) == os.readlink(dst), where
        return seen
    assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode), where
    if stat.S_ISREG(a.st_mode):
        with open(src, "rb") as fa, open(dst, "rb") as fb:
            assert fa.read() == fb.read(), where
        return seen
    assert stat.S_ISDIR(a.st_mode), where
    names = sorted(os.listdir(src))
    assert names == sorted(os.listdir(dst)), where
    for name in names:
        seen += assert_same_tree(os.path.join(src, name), os.path.join(dst, name))
    return seen


def restored(target: Path, src: Path) -> bytes:
    return os.path.join(os.fsencode(target), os.fsencode(src).lstrip(b"/"))


def source_node(repo, snap, src: Path):
    entries = list(list_snapshot(repo, snap, str(src)))
    assert entries[0].path == os.fsencode(src)
    return entries[0].node


# -- strategies --------------------------------------------------------------------------------

_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._- ", min_size=1, max_size=10).filter(
    lambda s: s not in (".", ".."))
NAMES = st.one_of(
    _SAFE.map(os.fsencode),
    st.sampled_from([b"caf\xe9", b"\xff\xfe", "日本語".encode(), b"a\\b", b"\n", b"-", b"...", b".hidden",
                     b"x" * 255]),
    st.binary(min_size=1, max_size=16).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")),
)
MTIMES = st.one_of(st.integers(0, 4_000_000_000 * 10**9), st.sampled_from([0, 1, 10**9, 1_700_000_000_999_999_999]))
FILE_MODES = st.sampled_from([0o600, 0o644, 0o755, 0o444, 0o400, 0o640, 0o700, 0o4755, 0o2750])
DIR_MODES = st.sampled_from([0o755, 0o700, 0o750, 0o555, 0o1777, 0o2755])
CONTENTS = st.one_of(
    st.just(b""),
    st.binary(max_size=200),
    st.builds(make_content, st.sampled_from(["text", "binary", "zeros", "repeat"]), st.integers(0, 40_000),
              st.integers(0, 2**32)),
)
LINK_TARGETS = st.one_of(
    st.sampled_from([b"../x", b"sub/file", b"/etc/passwd", b"/nonexistent/dangling", b"caf\xe9/x", b".", b"..",
                     b"a" * 1000, b"../../../../../../../../../../etc", b"loop"]),
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
)
FILES = st.builds(FileSpec, CONTENTS, FILE_MODES, MTIMES)
LINKS = st.builds(LinkSpec, LINK_TARGETS, MTIMES)
TREES = st.recursive(
    st.one_of(FILES, FILES, LINKS),
    lambda children: st.builds(DirSpec, st.dictionaries(NAMES, children, max_size=6), DIR_MODES, MTIMES),
    max_leaves=25,
)
ROOTS = st.builds(DirSpec, st.dictionaries(NAMES, TREES, max_size=8), DIR_MODES, MTIMES)

_counter = itertools.count()


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=ROOTS)
def test_random_tree_round_trip(small_repo, tmp_path, spec):
    base = tmp_path / f"ex{next(_counter)}"
    base.mkdir()
    src = base / "src"
    create(os.fsencode(src), spec)
    nfiles = count_files(spec)

    first = run_backup(small_repo, BackupOptions(paths=[str(src)]))
    assert first.warnings == [] and not first.partial
    assert first.summary.files_new == nfiles
    assert first.summary.files_unchanged == 0
    assert first.summary.bytes_read == first.summary.bytes_total

    res = run_restore(small_repo, first.snapshot, str(base / "t1"))
    assert res.errors == []
    assert res.files == nfiles
    assert assert_same_tree(os.fsencode(src), restored(base / "t1", src)) >= 1

    # A second backup finds the first as parent and reads nothing again.
    second = run_backup(small_repo, BackupOptions(paths=[str(src)]))
    assert second.snapshot.parent == first.snapshot.id
    assert (second.summary.files_new, second.summary.files_changed, second.summary.files_unchanged) == (0, 0, nfiles)
    assert second.summary.bytes_read == 0
    assert second.summary.bytes_total == first.summary.bytes_total
    assert source_node(small_repo, second.snapshot, src).subtree == source_node(small_repo, first.snapshot, src).subtree

    res2 = run_restore(small_repo, second.snapshot, str(base / "t2"))
    assert res2.errors == []
    assert_same_tree(os.fsencode(src), restored(base / "t2", src))


# -- deterministic edge cases ------------------------------------------------------------------


def test_deep_nesting_round_trip(small_repo, tmp_path):
    src = tmp_path / "src"
    spec = leaf = DirSpec(mode=0o700, mtime_ns=1_000_000_001)
    for depth in range(50):
        leaf.children[b"d%02d" % depth] = DirSpec(mode=0o755 if depth % 2 else 0o750, mtime_ns=10**18 + depth)
        leaf.children[b"f"] = FileSpec(b"level %d" % depth, 0o640, 5 * 10**17 + depth)
        leaf.children[b"l"] = LinkSpec(b"../" * depth + b"x", 7 * 10**17 + depth)
        leaf = leaf.children[b"d%02d" % depth]
    leaf.children[b"bottom"] = FileSpec(b"the end", 0o444, 123_456_789)
    create(os.fsencode(src), spec)

    result = run_backup(small_repo, BackupOptions(paths=[str(src)]))
    assert result.summary.files_new == 51
    assert result.summary.dirs == 51  # src + 50 nested (the virtual ancestors are not counted)
    res = run_restore(small_repo, result.snapshot, str(tmp_path / "target"))
    assert res.errors == []
    assert (res.files, res.symlinks) == (51, 50)
    assert assert_same_tree(os.fsencode(src), restored(tmp_path / "target", src)) == 1 + 50 * 3 + 1


@pytest.mark.parametrize("chunks", [1, MAX_INLINE_CHUNKS - 1, MAX_INLINE_CHUNKS, MAX_INLINE_CHUNKS + 1,
                                    2 * MAX_INLINE_CHUNKS, 2 * MAX_INLINE_CHUNKS + 1])
def test_chunk_list_boundaries(small_repo, tmp_path, chunks):
    """All-zero data is cut into max-size chunks, so the chunk count is exact."""
    src = tmp_path / "src"
    src.mkdir()
    data = bytes(chunks * BINARY_MAX)
    (src / "zeros.bin").write_bytes(data)
    result = run_backup(small_repo, BackupOptions(paths=[str(src)]))
    node = source_node(small_repo, result.snapshot, src / "zeros.bin")
    if chunks <= MAX_INLINE_CHUNKS - 1:
        assert (len(node.content), len(node.content_lists)) == (chunks, 0)
    else:
        expected_lists = -(-chunks // MAX_INLINE_CHUNKS)
        assert (len(node.content), len(node.content_lists)) == (0, expected_lists)
    chunk_ids = list(small_repo.file_chunks(node))
    assert len(chunk_ids) == chunks and len(set(chunk_ids)) == 1
    assert node.size == len(data)
    assert run_check(small_repo).errors == []

    res = run_restore(small_repo, result.snapshot, str(tmp_path / "target"))
    assert res.errors == [] and res.bytes == len(data)
    assert Path(os.fsdecode(restored(tmp_path / "target", src / "zeros.bin"))).read_bytes() == data


def test_many_distinct_chunks_round_trip(small_repo, tmp_path):
    """Text and binary files with more than 2 * MAX_INLINE_CHUNKS distinct chunks."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    text = "".join(rng.choice("abcdefghij klmnop\n") for _ in range(1 << 20)).encode()
    binary = rng.randbytes(5 << 20)
    (src / "big.txt").write_bytes(text)
    (src / "big.bin").write_bytes(binary)
    result = run_backup(small_repo, BackupOptions(paths=[str(src)]))
    assert result.summary.bytes_read == len(text) + len(binary)
    for name, data in (("big.txt", text), ("big.bin", binary)):
        node = source_node(small_repo, result.snapshot, src / name)
        ids = list(small_repo.file_chunks(node))
        assert len(ids) > 2 * MAX_INLINE_CHUNKS
        assert node.content == [] and len(node.content_lists) == -(-len(ids) // MAX_INLINE_CHUNKS)
    res = run_restore(small_repo, result.snapshot, str(tmp_path / "target"))
    assert res.errors == [] and res.bytes == len(text) + len(binary)
    assert_same_tree(os.fsencode(src), restored(tmp_path / "target", src))


def test_node_metadata_in_snapshot(small_repo, tmp_path):
    """The snapshot records exactly the metadata of the source (what ls shows)."""
    src = tmp_path / "src"
    create(os.fsencode(src), DirSpec({
        b"caf\xe9": FileSpec(b"latin-1 name", 0o604, 1_111_111_111_222_222_222),
        b"link": LinkSpec(b"/nonexistent/\xff", 2_000_000_000_000_000_001),
        b"empty": FileSpec(b"", 0o400, 0),
    }, 0o711, 3_000_000_000_000_000_003))
    result = run_backup(small_repo, BackupOptions(paths=[str(src)]))
    got = {e.path: e.node for e in list_snapshot(small_repo, result.snapshot, str(src))}
    root = os.fsencode(src)
    assert sorted(got) == [root, root + b"/caf\xe9", root + b"/empty", root + b"/link"]
    assert (got[root].type, got[root].mode, got[root].mtime_ns) == (DIR, 0o711, 3_000_000_000_000_000_003)
    f = got[root + b"/caf\xe9"]
    assert (f.type, f.mode, f.mtime_ns, f.size) == (FILE, 0o604, 1_111_111_111_222_222_222, 12)
    link = got[root + b"/link"]
    assert (link.type, link.target, link.mtime_ns) == (SYMLINK, b"/nonexistent/\xff", 2_000_000_000_000_000_001)
    e = got[root + b"/empty"]
    assert (e.type, e.size, e.content, e.content_lists, e.mode) == (FILE, 0, [], [], 0o400)
    st_ = os.stat(src / "empty")
    assert (e.uid, e.gid, e.inode) == (st_.st_uid, st_.st_gid, st_.st_ino)


def test_non_utf8_backup_path_round_trip(small_repo, tmp_path):
    """A path given on the command line whose name is not UTF-8 (str via os.fsdecode)."""
    src = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    create(src, DirSpec({b"\xff.txt": FileSpec(b"bytes", 0o640, 42)}, 0o750, 43))
    first = run_backup(small_repo, BackupOptions(paths=[os.fsdecode(src)]))
    assert first.snapshot.paths == [os.fsdecode(src)]
    reloaded = small_repo.load_snapshot(first.snapshot.id)
    assert [os.fsencode(p) for p in reloaded.paths] == [src]
    second = run_backup(small_repo, BackupOptions(paths=[os.fsdecode(src)]))
    assert second.snapshot.parent == first.snapshot.id and second.summary.files_unchanged == 1
    target = os.path.join(os.fsencode(tmp_path), b"target")
    assert run_restore(small_repo, second.snapshot, os.fsdecode(target)).errors == []
    assert assert_same_tree(src, os.path.join(target, src.lstrip(b"/"))) == 2


def test_restoring_twice_into_the_same_target_gives_the_same_tree(small_repo, tmp_path):
    src = tmp_path / "src"
    create(os.fsencode(src), DirSpec({
        b"ro.txt": FileSpec(b"read only", 0o444, 10**18),
        b"sub": DirSpec({b"x": FileSpec(b"x" * 5000, 0o600, 2 * 10**18), b"l": LinkSpec(b"x", 3 * 10**18)},
                        0o755, 4 * 10**18),
    }, 0o700, 5 * 10**18))
    snap = run_backup(small_repo, BackupOptions(paths=[str(src)])).snapshot
    target = tmp_path / "target"
    for _ in range(2):
        res = run_restore(small_repo, snap, str(target))
        assert res.errors == [] and (res.files, res.symlinks) == (2, 1)
        assert assert_same_tree(os.fsencode(src), restored(target, src)) == 5
