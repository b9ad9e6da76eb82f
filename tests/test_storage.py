"""Contract tests run against every storage backend, plus local-only and URL tests."""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.errors import (
    ObjectNotFound,
    RepositoryExists,
    StorageError,
    StorageFull,
    UsageError,
)
from strongroom.storage import Storage, open_storage, validate_name
from strongroom.storage.local import LocalStorage
from strongroom.storage.memory import MemoryStorage

H1 = "ab" + "1" * 62
H2 = "ab" + "2" * 62
H3 = "cd" + "3" * 62


@pytest.fixture(params=["memory", "local", "s3", "s3-cached"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend: Storage
    if request.param == "memory":
        backend = MemoryStorage()
    elif request.param.startswith("s3"):  # a real S3 server (rclone serve s3), a fresh bucket per test
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        backend = open_storage(server.url(bucket, "repo"))
        if request.param == "s3-cached":  # as the CLI opens S3 repositories
            from strongroom.storage.cache import CachedStorage

            backend = CachedStorage(backend, str(tmp_path / "object-cache"))
    else:
        backend = LocalStorage(tmp_path / "repo")
    backend.create()
    with backend:
        yield backend


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    backend = LocalStorage(tmp_path / "repo")
    backend.create()
    return backend


# -- contract ------------------------------------------------------------------------


def test_round_trip(storage: Storage) -> None:
    payload = bytes(range(256)) * 100
    storage.store(f"data/ab/{H1}", payload)
    assert storage.load(f"data/ab/{H1}") == payload
    assert storage.stat(f"data/ab/{H1}") == len(payload)


def test_store_accepts_memoryview_and_empty(storage: Storage) -> None:
    storage.store("index/" + "0" * 64, memoryview(b"hello world")[6:])
    assert storage.load("index/" + "0" * 64) == b"world"
    storage.store("locks/empty", b"")
    assert storage.load("locks/empty") == b""
    assert storage.stat("locks/empty") == 0


def test_ranges(storage: Storage) -> None:
    storage.store("config", b"0123456789")
    assert storage.load("config", 0, 3) == b"012"
    assert storage.load("config", 4) == b"456789"
    assert storage.load("config", 4, 2) == b"45"
    assert storage.load("config", 8, 10) == b"89"  # short read past the end
    assert storage.load("config", 10) == b""
    assert storage.load("config", 50, 5) == b""
    assert storage.load("config", 3, 0) == b""
    with pytest.raises(ValueError):
        storage.load("config", -1)
    with pytest.raises(ValueError):
        storage.load("config", 0, -1)


def test_missing_object(storage: Storage) -> None:
    name = f"data/ab/{H1}"
    with pytest.raises(ObjectNotFound, match=name):
        storage.load(name)
    with pytest.raises(ObjectNotFound, match=name):
        storage.load(name, 5, 5)
    with pytest.raises(ObjectNotFound, match=name):
        storage.stat(name)
    with pytest.raises(ObjectNotFound, match=name):
        storage.delete(name)
    # a folder is not an object
    with pytest.raises(ObjectNotFound):
        storage.load("data")
    with pytest.raises(ObjectNotFound):
        storage.stat("data/ab")


def test_delete(storage: Storage) -> None:
    storage.store("locks/a1", b"x")
    storage.store("locks/b2", b"y")
    storage.delete("locks/a1")
    with pytest.raises(ObjectNotFound):
        storage.load("locks/a1")
    assert storage.load("locks/b2") == b"y"
    assert list(storage.list("locks")) == [("locks/b2", 1)]
    with pytest.raises(ObjectNotFound):
        storage.delete("locks/a1")


def test_list(storage: Storage) -> None:
    storage.store(f"data/ab/{H1}", b"a" * 10)
    storage.store(f"data/ab/{H2}", b"b" * 20)
    storage.store(f"data/cd/{H3}", b"c" * 30)
    storage.store("index/" + "1" * 64, b"i" * 5)
    storage.store("snapshots/" + "2" * 64, b"s")
    storage.store("config", b"conf")
    storage.store("datax/zz", b"not under data/")
    assert sorted(storage.list("data")) == [
        (f"data/ab/{H1}", 10),
        (f"data/ab/{H2}", 20),
        (f"data/cd/{H3}", 30),
    ]
    assert sorted(storage.list("data/ab")) == [(f"data/ab/{H1}", 10), (f"data/ab/{H2}", 20)]
    assert list(storage.list("index")) == [("index/" + "1" * 64, 5)]
    assert list(storage.list("keys")) == []
    assert list(storage.list("nonexistent")) == []


def test_list_many_has_no_temp_files(storage: Storage) -> None:
    names = {f"data/{i:02x}/{i:02x}{'e' * 62}" for i in range(0, 256, 5)}
    for name in names:
        storage.store(name, name.encode())
    listed = dict(storage.list("data"))
    assert set(listed) == names
    assert all(size == len(name) for name, size in listed.items())
    assert not any(".tmp-" in name for name in listed)


def test_overwrite(storage: Storage) -> None:
    storage.store("keys/k1", b"first version")
    storage.store("keys/k1", b"second")
    assert storage.load("keys/k1") == b"second"
    assert list(storage.list("keys")) == [("keys/k1", 6)]


@pytest.mark.parametrize(
    "bad", ["../x", "/abs", "a//b", "a/./b", "", ".", "..", "a/", "a\\b", "a b", "x.tmp-1"]
)
def test_name_validation(storage: Storage, bad: str) -> None:
    with pytest.raises(ValueError):
        validate_name(bad)
    with pytest.raises(ValueError):
        storage.store(bad, b"x")
    with pytest.raises(ValueError):
        storage.load(bad)
    with pytest.raises(ValueError):
        storage.stat(bad)
    with pytest.raises(ValueError):
        storage.delete(bad)
    with pytest.raises(ValueError):
        storage.list(bad)  # refused eagerly, before iterating


def test_valid_names() -> None:
    for good in ["config", "keys/0a", f"data/ab/{H1}", "a.b-c_D/E9"]:
        assert validate_name(good) == good


def test_create_twice(storage: Storage) -> None:
    storage.create()  # nothing but the empty layout: what an init killed early leaves
    storage.store("config", b"c")
    with pytest.raises(RepositoryExists, match="already exists"):
        storage.create()
    assert storage.load("config") == b"c"


def test_create_takes_over_the_key_files_of_an_interrupted_init(storage: Storage) -> None:
    storage.store(f"keys/{H1}", b"key file of an init killed before its config")
    storage.store(f"keys/{H2}", b"and of a second one")
    storage.create()
    assert list(storage.list("keys")) == [] and storage.exists() is False
    storage.store(f"keys/{H3}", b"the key of the init that completes")
    storage.store("config", b"c")
    assert [name for name, _ in storage.list("keys")] == [f"keys/{H3}"] and storage.exists() is True


@pytest.mark.parametrize("other", [f"data/ab/{H2}", f"snapshots/{H2}", f"index/{H2}", f"locks/{H2}", "keys/readme"])
def test_create_refuses_a_location_holding_more_than_init_leftovers(storage: Storage, other: str) -> None:
    storage.store(f"keys/{H1}", b"k")
    storage.store(other, b"not from an init")
    with pytest.raises(RepositoryExists, match="not empty"):
        storage.create()
    folders = {"keys", other.split("/")[0]}
    assert sorted(name for folder in folders for name, _ in storage.list(folder)) == sorted({f"keys/{H1}", other})


def test_exists(tmp_path: Path) -> None:
    for backend in (MemoryStorage(), LocalStorage(tmp_path / "r")):
        assert backend.exists() is False
        backend.create()
        assert backend.exists() is False  # no config yet
        backend.store("config", b"c")
        assert backend.exists() is True
        backend.delete("config")
        assert backend.exists() is False


def test_concurrent_stores(storage: Storage) -> None:
    def work(t: int) -> None:
        for i in range(20):
            storage.store(f"data/{t:02x}/{t:02x}{i:062x}", bytes([t]) * i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = list(storage.list("data"))
    assert len(listed) == 160
    assert sum(size for _, size in listed) == 8 * sum(range(20))


# -- local only ----------------------------------------------------------------------


def test_local_layout(local: LocalStorage) -> None:
    root = local.root
    for folder in ("keys", "index", "snapshots", "locks"):
        assert (root / folder).is_dir()
    subfolders = sorted(p.name for p in (root / "data").iterdir())
    assert subfolders == [f"{i:02x}" for i in range(256)]
    assert not (root / "config").exists()


def test_local_create_in_empty_dir_and_nonempty_dir(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    LocalStorage(empty).create()
    assert (empty / "data" / "ff").is_dir()

    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    with pytest.raises(RepositoryExists, match="not empty"):
        LocalStorage(full).create()

    nested = tmp_path / "a" / "b" / "repo"
    LocalStorage(nested).create()
    assert (nested / "locks").is_dir()

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StorageError):
        LocalStorage(afile).create()


def test_local_create_takes_over_a_partial_layout_and_temporaries(tmp_path: Path) -> None:
    """An init killed while making the folders, or while writing its key file or config."""
    root = tmp_path / "repo"
    LocalStorage(root).create()
    for name in ("locks", "snapshots", *(f"data/{i:02x}" for i in range(0x80, 0x100))):
        (root / name).rmdir()
    (root / "keys" / H1).write_bytes(b"key")
    (root / "keys" / f"{H2}.tmp-0123456789abcdef").write_bytes(b"half a key")
    (root / "config.tmp-0123456789abcdef").write_bytes(b"half a config")
    LocalStorage(root).create()
    assert sorted(p.name for p in root.iterdir()) == ["data", "index", "keys", "locks", "snapshots"]
    assert len(list((root / "data").iterdir())) == 256 and list((root / "keys").iterdir()) == []


@pytest.mark.parametrize("other", ["notes.txt", "data/ab/readme", "data/xyz/", "unknown/", "keys/sub/"])
def test_local_create_refuses_a_folder_holding_anything_else(tmp_path: Path, other: str) -> None:
    root = tmp_path / "repo"
    LocalStorage(root).create()
    (root / "keys" / H1).write_bytes(b"key")
    if other.endswith("/"):
        (root / other).mkdir()
    else:
        (root / other).write_text("mine")
    with pytest.raises(RepositoryExists, match="not empty"):
        LocalStorage(root).create()
    assert (root / "keys" / H1).read_bytes() == b"key" and (root / other).exists()


def test_local_create_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "keys").symlink_to(elsewhere)
    with pytest.raises(RepositoryExists, match="not empty"):
        LocalStorage(tmp_path / "repo").create()


def test_local_leftover_temp_file_not_listed(local: LocalStorage) -> None:
    local.store(f"data/ab/{H1}", b"real")
    (local.root / "data" / "ab" / f"{H2}.tmp-deadbeef").write_bytes(b"partial")
    (local.root / "locks" / "x.tmp-1234").write_bytes(b"partial")
    assert list(local.list("data")) == [(f"data/ab/{H1}", 4)]
    assert list(local.list("locks")) == []


def test_local_store_leaves_no_temp_files(local: LocalStorage) -> None:
    local.store(f"data/ab/{H1}", b"x" * 1000)
    local.store(f"data/ab/{H1}", b"y" * 1000)
    assert sorted(os.listdir(local.root / "data" / "ab")) == [H1]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("errcode", [errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)])
@pytest.mark.parametrize("fail_in", ["write", "fsync"])
def test_local_enospc(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch, errcode: int, fail_in: str
) -> None:
    name = f"data/ab/{H1}"
    local.store(name, b"old content")
    real_write = os.write
    calls = []

    def failing_write(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) == 1:  # a partial write first, then the disk is full
            return real_write(fd, bytes(data)[:100])
        raise OSError(errcode, os.strerror(errcode))

    def always_fail(fd: int, *_: object) -> None:
        raise OSError(errcode, os.strerror(errcode))

    if fail_in == "write":
        monkeypatch.setattr(os, "write", failing_write)
    else:
        monkeypatch.setattr(os, "fsync", always_fail)
    with pytest.raises(StorageFull, match=name) as info:
        local.store(name, b"n" * 10_000)
    monkeypatch.undo()
    assert str(local.root) in str(info.value)
    if errcode == errno.ENOSPC:
        assert str(info.value).startswith(f"no space left on device while writing {name} (")
    assert _temp_files(local.root) == []
    assert local.load(name) == b"old content"  # the old object is untouched

    monkeypatch.setattr(os, "write", always_fail)  # a new object: nothing must appear
    with pytest.raises(StorageFull):
        local.store(f"data/ab/{H2}", b"new")
    monkeypatch.undo()
    assert _temp_files(local.root) == []
    with pytest.raises(ObjectNotFound):
        local.load(f"data/ab/{H2}")


def test_local_other_oserror(local: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError) as info:
        local.store("config", b"c")
    monkeypatch.undo()
    assert type(info.value) is StorageError
    message = str(info.value)
    assert "Input/output error" in message and "config" in message and "\n" not in message
    assert _temp_files(local.root) == []
    assert not local.exists()


def test_local_interrupt_removes_temp(local: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        local.store("config", b"c")
    monkeypatch.undo()
    assert _temp_files(local.root) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_local_permissions(local: LocalStorage) -> None:
    old = os.umask(0o022)
    try:
        local.store(f"data/ab/{H1}", b"secret")
        local.store("newfolder/sub/obj", b"secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(local.root / "data" / "ab" / H1).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(local.root / "newfolder" / "sub" / "obj").st_mode) == 0o600
    for folder in ("data", "data/ab", "keys", "locks", "newfolder", "newfolder/sub"):
        assert stat.S_IMODE(os.stat(local.root / folder).st_mode) == 0o700, folder
    assert stat.S_IMODE(os.stat(local.root).st_mode) == 0o700


def test_local_store_recreates_missing_subfolder(local: LocalStorage) -> None:
    os.rmdir(local.root / "data" / "ab")
    local.store(f"data/ab/{H1}", b"z")
    assert local.load(f"data/ab/{H1}") == b"z"


# -- open_storage --------------------------------------------------------------------


def test_open_storage_memory() -> None:
    a = open_storage("memory:")
    b = open_storage("memory:")
    a.store("config", b"a")
    assert not b.exists()  # anonymous stores are separate

    x = open_storage("memory:shared-test")
    y = open_storage("memory:shared-test")
    x.store("config", b"shared")
    assert y.load("config") == b"shared"
    assert x.url == "memory:shared-test"


def test_open_storage_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "p"
    urls = [str(p), f"file:{p}", f"file://{p}", f"local:{p}"]
    for url in urls:
        backend = open_storage(url)
        assert isinstance(backend, LocalStorage)
        assert backend.root == tmp_path / "p"
    monkeypatch.setenv("HOME", str(tmp_path))
    backend = open_storage("~/repo")
    assert isinstance(backend, LocalStorage) and backend.root == tmp_path / "repo"
    backend = open_storage("local:~/repo")
    assert isinstance(backend, LocalStorage) and backend.root == tmp_path / "repo"


def test_open_storage_unsupported() -> None:
    with pytest.raises(UsageError, match="unsupported repository URL scheme: sftp") as info:
        open_storage("sftp:host/prefix")
    assert info.value.exit_code == 2
    with pytest.raises(UsageError, match="invalid S3 URL") as info:
        open_storage("s3:bucket/prefix")  # neither s3://bucket nor s3:https://host/bucket
    assert info.value.exit_code == 2
    with pytest.raises(UsageError):
        open_storage("")
