"""Backup behaviour around the edges: unreadable and special files, excludes, dry runs, stdin,
interruption and recovery, listing, and check."""

from __future__ import annotations

import errno
import io
import os
import random
import socket
import threading
from pathlib import Path

import pytest

import strongroom.commands.backup as backup_module
from conftest import PASSWORD, WEAK_KDF
from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.ls import list_snapshot
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.errors import SourceError, UsageError
from strongroom.globs import read_pattern_file
from strongroom.pack import pack_path, parse_header
from strongroom.repository import Repository
from strongroom.storage import LocalStorage, Storage


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def listing(repo, snap, root: Path) -> list[str]:
    """Paths in the snapshot at and below ``root``, relative to it ("" for root itself)."""
    base = os.fsencode(root)
    return sorted(os.fsdecode(e.path[len(base) + 1:]) for e in list_snapshot(repo, snap, str(root)))


def names(repo, prefix: str) -> set[str]:
    return {n for n, _ in repo.storage.list(prefix)}


@pytest.fixture
def src(tmp_path) -> Path:
    root = tmp_path / "src"
    make_tree(root, {"a.txt": b"alpha\n", "b.txt": b"bravo\n", "sub/c.txt": b"charlie\n"})
    return root


# -- unreadable, vanished and special files ------------------------------------------------------


def failing_open(monkeypatch, victims: dict[bytes, OSError]) -> None:
    real = backup_module.open_for_reading

    def fake(path: bytes) -> int:
        if path in victims:
            raise victims[path]
        return real(path)

    monkeypatch.setattr(backup_module, "open_for_reading", fake)


@pytest.mark.parametrize("exc, reason", [
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), "No such file or directory"),
], ids=["unreadable", "vanished"])
def test_unreadable_file_is_a_warning_and_a_partial_snapshot(repo, src, monkeypatch, exc, reason):
    victim = src / "b.txt"
    failing_open(monkeypatch, {os.fsencode(victim): exc})
    seen = []
    result = run_backup(repo, BackupOptions(paths=[str(src)]), warn=seen.append)
    assert result.warnings == seen == [f"cannot read {victim}: {reason}"]
    assert result.summary.errors == 1 and result.partial
    assert result.snapshot is not None and repo.snapshot_ids() == [result.snapshot.id]
    assert result.snapshot.summary.errors == 1
    assert (result.summary.files_new, result.summary.bytes_read) == (2, len(b"alpha\ncharlie\n"))
    assert listing(repo, result.snapshot, src) == ["", "a.txt", "sub", "sub/c.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_chmod_000_file_is_skipped_with_warning(repo, src):
    (src / "b.txt").chmod(0)
    try:
        result = run_backup(repo, BackupOptions(paths=[str(src)]))
    finally:
        (src / "b.txt").chmod(0o644)
    assert result.warnings == [f"cannot read {src / 'b.txt'}: Permission denied"]
    assert result.partial
    assert listing(repo, result.snapshot, src) == ["", "a.txt", "sub", "sub/c.txt"]


def test_unlistable_directory_is_saved_empty_with_warning(repo, src, monkeypatch):
    real = backup_module.list_dir
    victim = os.fsencode(src / "sub")

    def fake(path: bytes):
        if path == victim:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path)

    monkeypatch.setattr(backup_module, "list_dir", fake)
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert result.warnings == [f"cannot list {src / 'sub'}: Permission denied"]
    assert result.partial
    assert listing(repo, result.snapshot, src) == ["", "a.txt", "b.txt", "sub"]


def test_unreadable_file_in_second_backup_is_not_carried_over(repo, src, monkeypatch):
    first = run_backup(repo, BackupOptions(paths=[str(src)]))
    (src / "b.txt").write_bytes(b"bravo, changed\n")
    failing_open(monkeypatch, {os.fsencode(src / "b.txt"): PermissionError(errno.EACCES, "Permission denied")})
    second = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert second.snapshot.parent == first.snapshot.id
    assert second.partial and second.summary.files_unchanged == 2
    assert listing(repo, second.snapshot, src) == ["", "a.txt", "sub", "sub/c.txt"]


def test_fifos_and_sockets_are_skipped_with_a_notice(repo, src, monkeypatch):
    os.mkfifo(src / "pipe")
    monkeypatch.chdir(src)  # a short relative name: AF_UNIX paths are limited to ~108 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("sock")
    try:
        done = {}
        # A fifo that were opened would block forever: run in a thread and bound the wait.
        t = threading.Thread(target=lambda: done.setdefault("r", run_backup(repo, BackupOptions(paths=[str(src)]))))
        t.start()
        t.join(60)
        assert not t.is_alive(), "backup blocked on a fifo"
    finally:
        sock.close()
    result = done["r"]
    assert result.warnings == [f"skipping fifo {src / 'pipe'}", f"skipping socket {src / 'sock'}"]
    assert result.summary.errors == 0 and not result.partial
    assert listing(repo, result.snapshot, src) == ["", "a.txt", "b.txt", "sub", "sub/c.txt"]


def test_fifo_given_as_a_path_is_skipped(repo, src):
    os.mkfifo(src / "pipe")
    result = run_backup(repo, BackupOptions(paths=[str(src / "pipe"), str(src / "a.txt")]))
    assert result.warnings == [f"skipping fifo {src / 'pipe'}"]
    assert [os.fsdecode(e.path) for e in list_snapshot(repo, result.snapshot, str(src))] == [str(src),
                                                                                             str(src / "a.txt")]


# -- excludes ------------------------------------------------------------------------------------


@pytest.fixture
def messy(tmp_path) -> Path:
    root = tmp_path / "messy"
    make_tree(root, {
        "keep.txt": b"k", "scratch.tmp": b"t", "notes.tmp.txt": b"n",
        "app/cache/blob1": b"c1", "app/cache/deeper/blob2": b"c2", "app/data.db": b"d",
        "cache/top": b"top-level cache", "app/logs/x.log": b"l", "app/logs/keep.me": b"m",
        "deep/a/b/c.tmp": b"tmp",
    })
    return root


def test_exclude_patterns(repo, messy):
    result = run_backup(repo, BackupOptions(paths=[str(messy)], excludes=["*.tmp", "**/cache/**"]))
    assert result.warnings == []
    assert listing(repo, result.snapshot, messy) == [
        "", "app", "app/cache", "app/data.db", "app/logs", "app/logs/keep.me", "app/logs/x.log",
        "cache", "deep", "deep/a", "deep/a/b", "keep.txt", "notes.tmp.txt"]


def test_exclude_directory_by_name_and_anchored(repo, messy):
    patterns = ["cache", f"{messy}/app/logs/*.log"]
    result = run_backup(repo, BackupOptions(paths=[str(messy)], excludes=patterns))
    assert listing(repo, result.snapshot, messy) == [
        "", "app", "app/data.db", "app/logs", "app/logs/keep.me", "deep", "deep/a", "deep/a/b",
        "deep/a/b/c.tmp", "keep.txt", "notes.tmp.txt", "scratch.tmp"]


def test_exclude_file(repo, messy, tmp_path):
    f = tmp_path / "excludes.txt"
    f.write_text("# comments and blank lines are ignored\n\n  *.tmp  \napp/logs\n   # indented comment\ndeep\n")
    patterns = read_pattern_file(str(f))
    assert patterns == ["*.tmp", "app/logs", "deep"]
    result = run_backup(repo, BackupOptions(paths=[str(messy)], excludes=patterns))
    assert listing(repo, result.snapshot, messy) == [
        "", "app", "app/cache", "app/cache/blob1", "app/cache/deeper", "app/cache/deeper/blob2", "app/data.db",
        "cache", "cache/top", "keep.txt", "notes.tmp.txt"]


# -- dry run ---------------------------------------------------------------------------------------


def test_dry_run_writes_nothing(repo, src):
    before = {p: names(repo, p) for p in ("data", "index", "snapshots", "locks", "keys")}
    dry = run_backup(repo, BackupOptions(paths=[str(src)], dry_run=True))
    assert dry.dry_run and dry.snapshot is None
    assert {p: names(repo, p) for p in before} == before
    assert dry.summary.files_new == 3 and dry.summary.bytes_read == len(b"alpha\nbravo\ncharlie\n")
    real = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert real.snapshot.parent is None  # the dry run left no snapshot behind
    assert dry.summary.blobs_added == real.summary.blobs_added  # same estimate of new blobs
    assert len(names(repo, "snapshots")) == 1

    # A dry run after a real one finds the parent and would add nothing.
    before = {p: names(repo, p) for p in ("data", "index", "snapshots", "locks")}
    dry2 = run_backup(repo, BackupOptions(paths=[str(src)], dry_run=True))
    assert dry2.summary.files_unchanged == 3 and dry2.summary.bytes_read == 0
    # No data; at most the trees of ancestors whose metadata moved (/tmp is shared with others).
    assert dry2.summary.blobs_added <= len(src.parts) - 1
    assert {p: names(repo, p) for p in before} == before


# -- stdin -------------------------------------------------------------------------------------------


def test_stdin_stream_backup_and_restore(repo, tmp_path):
    data = b"-- dump\n" + random.Random(5).randbytes(3 << 20)
    result = run_backup(repo, BackupOptions(stdin=io.BytesIO(data), stdin_filename="db.sql", tags=["db", "db"]))
    snap = result.snapshot
    assert snap.paths == ["/db.sql"] and snap.tags == ["db"]
    assert (result.summary.files_new, result.summary.bytes_read, result.summary.bytes_total) == (1, len(data), len(data))
    entries = list(list_snapshot(repo, snap))
    assert [(e.path, e.node.type, e.node.size, e.node.mode) for e in entries] == [(b"/db.sql", "file", len(data), 0o600)]
    res = run_restore(repo, snap, str(tmp_path / "target"))
    assert res.errors == [] and res.files == 1
    assert os.listdir(tmp_path / "target") == ["db.sql"]
    assert (tmp_path / "target" / "db.sql").read_bytes() == data
    assert (tmp_path / "target" / "db.sql").stat().st_mode & 0o7777 == 0o600


def test_empty_stdin(repo, tmp_path):
    snap = run_backup(repo, BackupOptions(stdin=io.BytesIO(b""))).snapshot
    assert snap.paths == ["/stdin"]
    run_restore(repo, snap, str(tmp_path / "t"))
    assert (tmp_path / "t" / "stdin").read_bytes() == b""


@pytest.mark.parametrize("bad", ["", "a/b", ".", "..", "/abs"])
def test_invalid_stdin_filename(repo, bad):
    with pytest.raises(UsageError):
        run_backup(repo, BackupOptions(stdin=io.BytesIO(b"x"), stdin_filename=bad))
    assert repo.snapshot_ids() == []


def test_stdin_command(repo, tmp_path):
    result = run_backup(repo, BackupOptions(stdin_command=["sh", "-c", "printf hello; exit 0"],
                                            stdin_filename="greeting.txt"))
    assert result.snapshot.paths == ["/greeting.txt"]
    run_restore(repo, result.snapshot, str(tmp_path / "t"))
    assert (tmp_path / "t" / "greeting.txt").read_bytes() == b"hello"


@pytest.mark.parametrize("command, message", [
    (["sh", "-c", "printf x; exit 3"], "exited with status 3"),
    (["sh", "-c", "head -c 200000 /dev/zero; kill -9 $$"], "exited with status -9"),
    (["/nonexistent/command"], "cannot run /nonexistent/command"),
])
def test_failing_stdin_command_writes_no_snapshot(repo, command, message):
    with pytest.raises(SourceError, match=message):
        run_backup(repo, BackupOptions(stdin_command=command, stdin_filename="out"))
    assert repo.snapshot_ids() == []
    assert names(repo, "locks") == set()


# -- interrupted backup ------------------------------------------------------------------------------


class InterruptingStorage(Storage):
    """Delegates to ``inner``; raises KeyboardInterrupt instead of storing the n-th pack."""

    def __init__(self, inner: Storage, n: int) -> None:
        self.inner, self.n, self.url = inner, n, inner.url
        self.data_stores = 0
        self.lock = threading.Lock()

    def store(self, name, data):
        if name.startswith("data/"):
            with self.lock:
                self.data_stores += 1
                hit = self.data_stores == self.n
            if hit:
                raise KeyboardInterrupt
        return self.inner.store(name, data)

    def create(self):
        return self.inner.create()

    def exists(self):
        return self.inner.exists()

    def load(self, name, offset=0, length=None):
        return self.inner.load(name, offset, length)

    def delete(self, name):
        return self.inner.delete(name)

    def list(self, prefix):
        return self.inner.list(prefix)

    def stat(self, name):
        return self.inner.stat(name)


SMALL = Config(chunking=ChunkingProfiles(ChunkerParams(64, 256, 1024), ChunkerParams(256, 1024, 4096)),
               pack_size=64 * 1024)


def small_pack_repo(path: Path) -> Repository:
    return Repository.init(LocalStorage(path), PASSWORD, kdf=WEAK_KDF,
                           config=Config(chunking=SMALL.chunking, pack_size=SMALL.pack_size))


def test_interrupted_backup_leaves_no_snapshot_and_next_backup_reuses_its_packs(tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(9)
    make_tree(data_dir, {f"f{i}.bin": rng.randbytes(1 << 20) for i in range(3)})

    # Reference: the same backup from scratch in another repository.
    with small_pack_repo(tmp_path / "scratch") as scratch:
        from_scratch = run_backup(scratch, BackupOptions(paths=[str(data_dir)])).summary.blobs_added

    repo = small_pack_repo(tmp_path / "repo")
    try:
        inner = repo.storage
        repo.storage = InterruptingStorage(inner, n=10)
        with pytest.raises(KeyboardInterrupt):
            run_backup(repo, BackupOptions(paths=[str(data_dir)]))
        repo.storage = inner
        assert repo.snapshot_ids() == []
        assert names(repo, "locks") == set()
        orphans = names(repo, "data")
        assert len(orphans) >= 9
        assert names(repo, "index") == set()  # the interrupted backup indexed nothing

        check = run_check(repo)
        assert check.errors == []
        assert len(check.notes) == len(orphans) and all("not in any index" in n for n in check.notes)

        recovered = 0
        for name in orphans:
            pack = inner.load(name)
            recovered += len(parse_header(repo.master, pack, len(pack), name)[1])

        result = run_backup(repo, BackupOptions(paths=[str(data_dir)]))
        assert result.warnings == []
        assert result.summary.blobs_added == from_scratch - recovered
        assert result.summary.blobs_added < from_scratch
        check = run_check(repo)
        assert (check.errors, check.notes) == ([], [])
        res = run_restore(repo, result.snapshot, str(tmp_path / "target"))
        assert res.errors == []
        for i in range(3):
            restored = tmp_path / "target" / str(data_dir / f"f{i}.bin").lstrip("/")
            assert restored.read_bytes() == (data_dir / f"f{i}.bin").read_bytes()
    finally:
        repo.close()


# -- ls and check ----------------------------------------------------------------------------------


def test_ls_lists_expected_paths(repo, src, tmp_path):
    os.symlink("a.txt", src / "link")
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    all_entries = [os.fsdecode(e.path) for e in list_snapshot(repo, result.snapshot)]
    ancestors = ["/" + "/".join(src.parts[1:i]) for i in range(2, len(src.parts))]
    assert all_entries == ancestors + [str(src), f"{src}/a.txt", f"{src}/b.txt", f"{src}/link", f"{src}/sub",
                                       f"{src}/sub/c.txt"]
    sub = list(list_snapshot(repo, result.snapshot, str(src / "sub")))
    assert [(os.fsdecode(e.path), e.node.type) for e in sub] == [(str(src / "sub"), "dir"),
                                                                  (str(src / "sub/c.txt"), "file")]
    one = list(list_snapshot(repo, result.snapshot, str(src / "link")))
    assert [(e.node.type, e.node.target) for e in one] == [("symlink", b"a.txt")]
    assert one[0].to_json()["target"] == "a.txt"
    with pytest.raises(UsageError):
        list(list_snapshot(repo, result.snapshot, str(src / "nope")))
    with pytest.raises(UsageError):
        list(list_snapshot(repo, result.snapshot, str(src / "a.txt" / "below-a-file")))


def test_check_passes_on_a_healthy_repository(repo, src):
    run_backup(repo, BackupOptions(paths=[str(src)]))
    run_backup(repo, BackupOptions(paths=[str(src)]))
    check = run_check(repo)
    assert (check.errors, check.notes) == ([], [])
    assert check.snapshots == 2 and check.packs == len(names(repo, "data"))
    assert check.ok


@pytest.mark.parametrize("which", ["data", "tree"])
def test_check_detects_a_deleted_pack(repo, src, which):
    snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    (a_txt,) = list_snapshot(repo, snap, str(src / "a.txt"))
    data_pack = repo.locate(a_txt.node.content[0]).pack
    tree_pack = repo.locate(bytes.fromhex(snap.tree)).pack
    assert names(repo, "data") == {pack_path(data_pack), pack_path(tree_pack)}
    pack = data_pack if which == "data" else tree_pack
    repo.storage.delete(pack_path(pack))
    check = run_check(repo)
    assert not check.ok
    assert check.errors[0] == f"pack {pack}: listed in the index but missing from storage"
    # and what it affects: every file whose chunks it held, or the root tree
    affected = sorted(e.split(": ", 1)[0] for e in check.errors[1:])
    expected = sorted(str(p) for p in src.rglob("*") if p.is_file()) if which == "data" else ["/"]
    assert affected == [f"snapshot {snap.short_id} {w}" for w in expected]
    assert all("pack is missing" in e for e in check.errors[1:])


def test_check_detects_a_truncated_pack(repo, src):
    run_backup(repo, BackupOptions(paths=[str(src)]))
    name = sorted(names(repo, "data"))[0]
    data = repo.storage.load(name)
    repo.storage.store(name, data[:-1])
    check = run_check(repo)
    assert check.errors == [f"pack {name.rsplit('/', 1)[1]}: size {len(data) - 1}, the index records {len(data)}"]


# -- paths -----------------------------------------------------------------------------------------


def test_missing_path_and_no_path(repo, tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        run_backup(repo, BackupOptions(paths=[str(tmp_path / "missing")]))
    with pytest.raises(UsageError):
        run_backup(repo, BackupOptions(paths=[]))
    with pytest.raises(UsageError):
        run_backup(repo, BackupOptions(paths=["/"]))
    assert repo.snapshot_ids() == []


def test_overlapping_paths_are_stored_once(repo, src):
    result = run_backup(repo, BackupOptions(paths=[str(src / "sub"), str(src), str(src / "sub" / "c.txt")]))
    assert result.snapshot.paths == sorted([str(src), str(src / "sub"), str(src / "sub" / "c.txt")])
    assert result.summary.files_new == 3
    assert listing(repo, result.snapshot, src) == ["", "a.txt", "b.txt", "sub", "sub/c.txt"]


def test_relative_paths_are_made_absolute(repo, src, monkeypatch):
    monkeypatch.chdir(src.parent)
    result = run_backup(repo, BackupOptions(paths=["src/sub"]))
    assert result.snapshot.paths == [str(src / "sub")]
    assert listing(repo, result.snapshot, src) == ["", "sub", "sub/c.txt"]


def test_deeply_nested_source_is_backed_up(repo, tmp_path):
    root = tmp_path / "deep"
    path = str(root) + "/d" * 600
    os.makedirs(path)
    Path(path, "bottom").write_bytes(b"bottom")
    result = run_backup(repo, BackupOptions(paths=[str(root)]))
    assert result.summary.files_new == 1 and result.summary.dirs == 601
