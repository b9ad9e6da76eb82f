from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import strongroom.restore_target as rt
from strongroom.errors import IntegrityError, MaliciousTree, StrongroomError
from strongroom.restore_target import RestoreTarget, check_name

BAD_NAMES = [b"", b".", b"..", b"a/b", b"/abs", b"/", b"a\0b", b"../x"]
MTIME = 1_234_567_890_123_456_789
ATIME = 1_111_111_111_987_654_321


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(target, outside): two sibling directories; nothing may ever appear in outside."""
    target = tmp_path / "target"
    outside = tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    return target, outside


def listing(p: Path) -> list[str]:
    return sorted(str(q.relative_to(p)) for q in p.rglob("*"))


# ---------------------------------------------------------------- check_name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_name_refuses(name: bytes) -> None:
    with pytest.raises(MaliciousTree):
        check_name(name)


@pytest.mark.parametrize("name", [b"a", b"...", b".hidden", b"caf\xe9", b" ", b"\xff\xfe", b"a\\b"])
def test_check_name_accepts(name: bytes) -> None:
    check_name(name)


def test_check_name_error_is_escaped_and_in_the_tree() -> None:
    with pytest.raises(MaliciousTree) as info:
        check_name(b"\x1b[31m\n/evil")
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert "\\x1b[31m\\n/evil" in msg
    assert isinstance(info.value, IntegrityError) and isinstance(info.value, StrongroomError)
    with pytest.raises(MaliciousTree) as info:
        check_name(b"/" * 10_000)
    assert len(str(info.value)) < 400


def test_check_name_rejects_str() -> None:
    with pytest.raises(TypeError):
        check_name("a")  # type: ignore[arg-type]


# ---------------------------------------------------------------- round trips


def test_creates_root_and_parents(tmp_path: Path) -> None:
    root = tmp_path / "x" / "y" / "z"
    with RestoreTarget(root) as t:
        assert root.is_dir()
        assert t.root == os.fsencode(root)
    with RestoreTarget(os.fsencode(root)):  # existing root, bytes path
        pass


def test_write_and_read_back(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    big = os.urandom(3 * 1024 * 1024 + 17)
    with RestoreTarget(target) as t:
        t.make_dir([b"d", b"e"])
        t.make_dir([b"d", b"e"])  # existing directories are fine
        n = t.write_file([b"d", b"e", b"f.txt"], [b"hello ", memoryview(b"world"), b""])
        assert n == 11
        assert t.write_file([b"d", b"big"], [big[:100], big[100:2_000_000], big[2_000_000:]]) == len(big)
        assert t.write_file([b"empty"], []) == 0
        t.symlink([b"d", b"link"], b"e/f.txt")
        t.set_metadata([b"d", b"e", b"f.txt"], mode=0o100640, mtime_ns=MTIME, atime_ns=ATIME)
        t.set_metadata([b"d", b"e"], mode=0o751, mtime_ns=MTIME + 1)
        t.set_metadata([b"d", b"link"], mode=None, mtime_ns=MTIME + 2, is_symlink=True)
        t.set_metadata([], mode=0o755, mtime_ns=MTIME + 3)

    f = target / "d" / "e" / "f.txt"
    st = os.lstat(f)  # before reading: reading may update the atime
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == MTIME
    assert st.st_atime_ns == ATIME
    assert f.read_bytes() == b"hello world"
    assert (target / "d" / "big").read_bytes() == big
    assert (target / "empty").read_bytes() == b""
    st = os.lstat(target / "d" / "e")
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert st.st_mtime_ns == MTIME + 1
    assert os.readlink(target / "d" / "link") == "e/f.txt"
    assert os.lstat(target / "d" / "link").st_mtime_ns == MTIME + 2
    assert (target / "d" / "link").read_bytes() == b"hello world"
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_mtime_ns == MTIME + 3


def test_initial_modes_are_private(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        t.make_dir([b"d"])
        fd = t.open_file([b"d", b"f"])
        try:
            assert os.write(fd, b"xyz") == 3
            assert stat.S_IMODE(os.fstat(fd).st_mode) & 0o077 == 0
        finally:
            os.close(fd)
    assert stat.S_IMODE(os.stat(target / "d").st_mode) & 0o077 == 0
    assert (target / "d" / "f").read_bytes() == b"xyz"


def test_non_utf8_names_survive(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        t.make_dir([b"caf\xe9"])
        t.write_file([b"caf\xe9", b"\xff\xfe.bin"], [b"data"])
        t.symlink([b"caf\xe9", b"l\xe9"], b"\xff\xfe.bin")
        t.set_metadata([b"caf\xe9", b"\xff\xfe.bin"], mode=0o644, mtime_ns=MTIME)
    tb = os.fsencode(target)
    assert os.listdir(tb) == [b"caf\xe9"]
    assert sorted(os.listdir(tb + b"/caf\xe9")) == [b"l\xe9", b"\xff\xfe.bin"]
    with open(tb + b"/caf\xe9/\xff\xfe.bin", "rb") as fh:
        assert fh.read() == b"data"
    assert os.readlink(tb + b"/caf\xe9/l\xe9") == b"\xff\xfe.bin"
    assert os.stat(tb + b"/caf\xe9/\xff\xfe.bin").st_mtime_ns == MTIME


def test_overwrites_existing_file_with_new_inode(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    (target / "f").write_bytes(b"old content that is longer")
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"new"])
    assert (target / "f").read_bytes() == b"new"


def test_short_writes_are_completed(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, _ = dirs
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:7])

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        calls.append([len(b) for b in buffers])
        return real_write(fd, b"".join(buffers)[:7])

    payload = os.urandom(100)
    with RestoreTarget(target) as t:
        monkeypatch.setattr(rt.os, "write", short_write)
        monkeypatch.setattr(rt.os, "writev", short_writev)
        assert t.write_file([b"f"], [payload[:50], payload[50:]]) == 100
        monkeypatch.undo()
    assert (target / "f").read_bytes() == payload
    # one writev of both chunks (7 bytes taken), then the rest of each chunk 7 bytes at a time
    assert calls == [[50, 50], 43, 36, 29, 22, 15, 8, 1, 50, 43, 36, 29, 22, 15, 8, 1]


def test_small_chunks_go_out_in_few_large_writes(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, _ = dirs
    real_writev = os.writev
    sizes = []

    def counting_writev(fd: int, buffers: list[bytes]) -> int:
        sizes.append(sum(len(b) for b in buffers))
        return real_writev(fd, buffers)

    chunks = [os.urandom(16 * 1024) for _ in range(200)]  # 3.1 MiB in 16 KiB chunks
    with RestoreTarget(target) as t:
        monkeypatch.setattr(rt.os, "writev", counting_writev)
        assert t.write_file([b"f"], chunks) == 200 * 16 * 1024
        monkeypatch.undo()
    assert (target / "f").read_bytes() == b"".join(chunks)
    assert sizes == [1 << 20, 1 << 20, 1 << 20, 8 * 16 * 1024]  # 64 chunks per writev, then the last 8


def test_size_hint_does_not_change_the_size(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    data = os.urandom(1024 * 1024 + 5)
    with RestoreTarget(target) as t:
        assert t.write_file([b"a"], [data], size_hint=8 * 1024 * 1024) == len(data)
        assert t.write_file([b"b"], [data], size_hint=2 * 1024 * 1024) == len(data)
        assert t.write_file([b"c"], [data], size_hint=10) == len(data)
    for n in "abc":
        assert (target / n).read_bytes() == data


def test_deep_tree_with_tiny_cache(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    parts = [b"d%d" % i for i in range(150)]
    with RestoreTarget(target, max_open_dirs=2) as t:
        t.make_dir(parts)
        t.write_file(parts + [b"leaf"], [b"deep"])
        t.write_file(parts[:3] + [b"leaf"], [b"shallow"])
        t.write_file(parts + [b"leaf2"], [b"deep2"])
        assert t.open_dir_count <= 2
    assert Path(target, *[p.decode() for p in parts], "leaf").read_bytes() == b"deep"
    assert Path(target, *[p.decode() for p in parts], "leaf2").read_bytes() == b"deep2"


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_every_operation_refuses_bad_names(dirs: tuple[Path, Path], bad: bytes) -> None:
    target, outside = dirs
    with RestoreTarget(target) as t:
        t.make_dir([b"ok"])
        for parts in ([bad], [b"ok", bad], [bad, b"outside", b"escape"], [b"..", b"..", bad]):
            with pytest.raises(MaliciousTree):
                t.make_dir(parts)
            with pytest.raises(MaliciousTree):
                t.open_file(parts)
            with pytest.raises(MaliciousTree):
                t.write_file(parts, [b"x"])
            with pytest.raises(MaliciousTree):
                t.symlink(parts, b"/etc/passwd")
            with pytest.raises(MaliciousTree):
                t.set_metadata(parts, mode=0o777, mtime_ns=0)
    assert listing(target) == ["ok"]
    assert listing(outside) == []
    assert sorted(os.listdir(target.parent)) == ["outside", "target"]


def test_dotdot_path_does_not_escape(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree):
            t.write_file([b"..", b"outside", b"pwned"], [b"x"])
        with pytest.raises(MaliciousTree):
            t.make_dir([b"..", b"outside", b"pwned"])
    assert listing(outside) == []


def test_root_itself_is_not_a_file_or_symlink(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree):
            t.open_file([])
        with pytest.raises(MaliciousTree):
            t.write_file([], [b"x"])
        with pytest.raises(MaliciousTree):
            t.symlink([], b"x")
    assert target.is_dir() and not target.is_symlink()


def test_bad_symlink_targets(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree):
            t.symlink([b"l"], b"")
        with pytest.raises(MaliciousTree):
            t.symlink([b"l"], b"a\0b")
        with pytest.raises(TypeError):
            t.symlink([b"l"], "str")  # type: ignore[arg-type]
    assert listing(target) == []


def test_parts_must_be_a_sequence_of_bytes(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        with pytest.raises(TypeError):
            t.make_dir(b"abc")
        with pytest.raises(TypeError):
            t.make_dir(["abc"])  # type: ignore[list-item]
    assert listing(target) == []


# ---------------------------------------------------------------- planted symlinks


def test_planted_dir_symlink_is_never_followed(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    (target / "evil").symlink_to(outside)
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree, match="symlink"):
            t.make_dir([b"evil"])
        with pytest.raises(MaliciousTree):
            t.make_dir([b"evil", b"x"])
        with pytest.raises(MaliciousTree):
            t.open_file([b"evil", b"x"])
        with pytest.raises(MaliciousTree):
            t.write_file([b"evil", b"x"], [b"pwned"])
        with pytest.raises(MaliciousTree):
            t.symlink([b"evil", b"x"], b"y")
        with pytest.raises(MaliciousTree):
            t.set_metadata([b"evil"], mode=0o777, mtime_ns=0)
        with pytest.raises(MaliciousTree):
            t.set_metadata([b"evil", b"x"], mode=0o777, mtime_ns=0)
    assert listing(outside) == []
    assert (target / "evil").is_symlink()
    assert stat.S_IMODE(os.stat(outside).st_mode) != 0o777


def test_planted_dangling_symlink_is_not_created_through(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    (target / "evil").symlink_to(outside / "newdir")
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree):
            t.make_dir([b"evil"])
        with pytest.raises(MaliciousTree):
            t.make_dir([b"evil", b"x"])
    assert listing(outside) == []


def test_intermediate_symlink_deep_in_the_path(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    (target / "a" / "b").mkdir(parents=True)
    (target / "a" / "b" / "c").symlink_to("../../../outside")
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree):
            t.write_file([b"a", b"b", b"c", b"passwd"], [b"pwned"])
        with pytest.raises(MaliciousTree):
            t.make_dir([b"a", b"b", b"c", b"d"])
    assert listing(outside) == []


def test_file_in_place_of_a_directory(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    (target / "f").write_bytes(b"keep")
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree, match="regular file"):
            t.make_dir([b"f", b"x"])
        with pytest.raises(MaliciousTree):
            t.write_file([b"f", b"x"], [b"x"])
    assert (target / "f").read_bytes() == b"keep"


def test_symlink_at_file_name_is_replaced_not_written_through(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    victim = outside / "victim"
    victim.write_bytes(b"original")
    (target / "f").symlink_to(victim)
    (target / "g").symlink_to(outside / "would-be-created")
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"restored"])
        fd = t.open_file([b"g"])
        os.close(fd)
    assert victim.read_bytes() == b"original"
    assert listing(outside) == ["victim"]
    assert not (target / "f").is_symlink()
    assert (target / "f").read_bytes() == b"restored"
    assert not (target / "g").is_symlink()


def test_hardlink_at_file_name_is_not_truncated(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    victim = outside / "victim"
    victim.write_bytes(b"original")
    os.link(victim, target / "f")
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"restored"])
    assert victim.read_bytes() == b"original"
    assert (target / "f").read_bytes() == b"restored"


@pytest.mark.timeout(20)
def test_fifo_at_file_name_does_not_block(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    os.mkfifo(target / "f")
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"data"])
    assert (target / "f").read_bytes() == b"data"


def test_existing_directory_is_not_replaced(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    (target / "d").mkdir()
    (target / "d" / "keep").write_bytes(b"k")
    with RestoreTarget(target) as t:
        with pytest.raises(IsADirectoryError):
            t.write_file([b"d"], [b"x"])
        with pytest.raises(IsADirectoryError):
            t.symlink([b"d"], b"/")
    assert (target / "d" / "keep").read_bytes() == b"k"


def test_missing_parent_is_an_error(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        with pytest.raises(FileNotFoundError):
            t.write_file([b"nope", b"f"], [b"x"])
        with pytest.raises(FileNotFoundError):
            t.symlink([b"nope", b"l"], b"x")
    assert listing(target) == []


def test_own_symlink_to_dotdot_cannot_be_written_through(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    with RestoreTarget(target) as t:
        t.make_dir([b"sub"])
        t.symlink([b"sub", b"up"], b"../..")  # resolves to target's parent
        t.symlink([b"sub", b"out"], b"../../outside")
        assert os.readlink(target / "sub" / "up") == "../.."
        with pytest.raises(MaliciousTree):
            t.write_file([b"sub", b"up", b"outside", b"pwned"], [b"x"])
        with pytest.raises(MaliciousTree):
            t.write_file([b"sub", b"out", b"pwned"], [b"x"])
        with pytest.raises(MaliciousTree):
            t.make_dir([b"sub", b"out", b"pwned"])
        # Writing a file at the symlink's own name replaces the symlink.
        t.write_file([b"sub", b"out"], [b"now a file"])
    assert listing(outside) == []
    assert sorted(os.listdir(target.parent)) == ["outside", "target"]
    assert (target / "sub" / "out").read_bytes() == b"now a file"


def test_symlink_replaces_existing_entries(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    (target / "f").write_bytes(b"file")
    (target / "l").symlink_to("old")
    with RestoreTarget(target) as t:
        t.symlink([b"f"], str(outside).encode())
        t.symlink([b"l"], b"new")
    assert os.readlink(target / "f") == str(outside)
    assert os.readlink(target / "l") == "new"
    assert listing(outside) == []


def test_cached_directory_swapped_for_symlink_redirects_nothing(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    with RestoreTarget(target) as t:
        t.make_dir([b"a"])
        t.write_file([b"a", b"one"], [b"1"])
        os.rename(target / "a", target / "moved")
        (target / "a").symlink_to(outside)
        t.write_file([b"a", b"two"], [b"2"])  # goes to the directory we opened
    assert listing(outside) == []
    assert (target / "moved" / "two").read_bytes() == b"2"


# ---------------------------------------------------------------- partial files


def test_partial_file_removed_on_exception(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs

    class Boom(Exception):
        pass

    def chunks():
        yield b"a" * (2 * 1024 * 1024)  # large enough to be on disk already
        yield b"b" * 10
        raise Boom

    before = fd_count()
    with RestoreTarget(target) as t:
        t.make_dir([b"d"])
        with pytest.raises(Boom):
            t.write_file([b"d", b"f"], chunks(), size_hint=4 * 1024 * 1024)
        assert os.listdir(target / "d") == []
        t.write_file([b"d", b"g"], [b"fine"])
    assert fd_count() == before
    assert os.listdir(target / "d") == ["g"]


def test_partial_file_removed_on_write_error(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, _ = dirs

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    with RestoreTarget(target) as t:
        monkeypatch.setattr(rt.os, "write", failing_write)
        with pytest.raises(OSError):
            t.write_file([b"f"], [b"data"])
        monkeypatch.undo()
    assert listing(target) == []


# ---------------------------------------------------------------- metadata


def test_set_metadata_on_symlink_does_not_touch_target(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    victim = outside / "victim"
    victim.write_bytes(b"v")
    os.chmod(victim, 0o640)
    os.utime(victim, ns=(5_000_000_000, 5_000_000_000))
    before = os.stat(victim)
    with RestoreTarget(target) as t:
        t.symlink([b"l"], os.fsencode(victim))
        t.set_metadata([b"l"], mode=0o777, mtime_ns=MTIME, atime_ns=ATIME, is_symlink=True)
        if os.geteuid() == 0:
            t.set_metadata([b"l"], mode=None, mtime_ns=None, uid=4242, gid=4243, is_symlink=True)
    after = os.stat(victim)
    assert (after.st_mode, after.st_mtime_ns, after.st_atime_ns, after.st_uid, after.st_gid) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_atime_ns,
        before.st_uid,
        before.st_gid,
    )
    lst = os.lstat(target / "l")
    assert lst.st_mtime_ns == MTIME
    assert lst.st_atime_ns == ATIME
    if os.geteuid() == 0:
        assert (lst.st_uid, lst.st_gid) == (4242, 4243)


def test_set_metadata_refuses_unexpected_symlink(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    victim = outside / "victim"
    victim.write_bytes(b"v")
    os.chmod(victim, 0o600)
    (target / "f").symlink_to(victim)
    (target / "plain").write_bytes(b"p")
    with RestoreTarget(target) as t:
        with pytest.raises(MaliciousTree):
            t.set_metadata([b"f"], mode=0o777, mtime_ns=MTIME)
        with pytest.raises(MaliciousTree):
            t.set_metadata([b"plain"], mode=None, mtime_ns=MTIME, is_symlink=True)
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert os.stat(victim).st_mtime_ns != MTIME


def test_none_leaves_values_unchanged(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"x"])
        t.set_metadata([b"f"], mode=0o644, mtime_ns=MTIME, atime_ns=ATIME)
        t.set_metadata([b"f"], mode=None, mtime_ns=None)
        st = os.stat(target / "f")
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_atime_ns) == (0o644, MTIME, ATIME)
        t.set_metadata([b"f"], mode=None, mtime_ns=MTIME + 5)
        st = os.stat(target / "f")
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_atime_ns) == (0o644, MTIME + 5, ATIME)


def test_setuid_bits_are_kept_and_type_bits_dropped(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"x"])
        t.set_metadata([b"f"], mode=stat.S_IFREG | 0o4755, mtime_ns=None)
    assert stat.S_IMODE(os.stat(target / "f").st_mode) == 0o4755


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_as_root(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"x"])
        t.set_metadata([b"f"], mode=None, mtime_ns=None, uid=12345, gid=23456)
        t.set_metadata([b"f"], mode=None, mtime_ns=None, gid=34567)
        t.set_metadata([], mode=None, mtime_ns=None, uid=777)
    st = os.stat(target / "f")
    assert (st.st_uid, st.st_gid) == (12345, 34567)
    assert os.stat(target).st_uid == 777


def test_no_chown_when_not_root(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, _ = dirs

    def no_chown(*args: object, **kwargs: object) -> None:
        raise AssertionError("chown must not be called")

    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"x"])
        monkeypatch.setattr(rt.os, "geteuid", lambda: 1000)
        monkeypatch.setattr(rt.os, "chown", no_chown)
        t.set_metadata([b"f"], mode=0o640, mtime_ns=MTIME, uid=0, gid=0)
        t.set_metadata([], mode=0o750, mtime_ns=MTIME, uid=0, gid=0)
    assert stat.S_IMODE(os.stat(target / "f").st_mode) == 0o640


def test_chown_eperm_is_ignored(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, _ = dirs

    def eperm(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    with RestoreTarget(target) as t:
        t.write_file([b"f"], [b"x"])
        monkeypatch.setattr(rt.os, "geteuid", lambda: 0)
        monkeypatch.setattr(rt.os, "chown", eperm)
        t.set_metadata([b"f"], mode=0o600, mtime_ns=MTIME, uid=1, gid=1)
    assert os.stat(target / "f").st_mtime_ns == MTIME


def test_chmod_fallback_without_libc_nofollow(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, outside = dirs
    real_chmod = os.chmod
    used_fallback = []

    def old_libc_chmod(path, mode, *, dir_fd=None, follow_symlinks=True):  # type: ignore[no-untyped-def]
        if not follow_symlinks:
            raise ValueError("chmod: cannot use dir_fd and follow_symlinks together")
        used_fallback.append(path)
        return real_chmod(path, mode, dir_fd=dir_fd)

    victim = outside / "victim"
    victim.write_bytes(b"v")
    os.chmod(victim, 0o600)
    with RestoreTarget(target) as t:
        t.make_dir([b"d"])
        t.write_file([b"d", b"f"], [b"x"])
        os.symlink(victim, target / "d" / "l")
        monkeypatch.setattr(rt.os, "chmod", old_libc_chmod)
        t.set_metadata([b"d", b"f"], mode=0o604, mtime_ns=None)
        t.set_metadata([b"d"], mode=0o711, mtime_ns=None)
        # Simulate the race where the entry became a symlink after the type check.
        with pytest.raises(MaliciousTree):
            t._chmod_nofollow(t._dir_fd((b"d",), create=False), (b"d", b"l"), 0o777)
    assert used_fallback
    assert stat.S_IMODE(os.stat(target / "d" / "f").st_mode) == 0o604
    assert stat.S_IMODE(os.stat(target / "d").st_mode) == 0o711
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o600


# ---------------------------------------------------------------- fds and lifecycle


def test_fd_cache_is_bounded_and_does_not_leak(dirs: tuple[Path, Path]) -> None:
    target, outside = dirs
    (target / "evil").symlink_to(outside)
    before = fd_count()
    t = RestoreTarget(target, max_open_dirs=4)
    for i in range(20):
        for j in range(3):
            t.make_dir([b"d%d" % i, b"e%d" % j])
            t.write_file([b"d%d" % i, b"e%d" % j, b"f"], [b"x"])
            t.symlink([b"d%d" % i, b"e%d" % j, b"l"], b"f")
            t.set_metadata([b"d%d" % i, b"e%d" % j, b"f"], mode=0o644, mtime_ns=MTIME)
        assert t.open_dir_count <= 4
        assert fd_count() <= before + 5  # root + at most 4 cached directories
    for _ in range(10):  # error paths do not leak either
        with pytest.raises(MaliciousTree):
            t.write_file([b"evil", b"x"], [b"x"])
        with pytest.raises(FileNotFoundError):
            t.write_file([b"missing", b"x"], [b"x"])
    assert fd_count() <= before + 5
    t.close()
    t.close()  # idempotent
    assert fd_count() == before
    assert listing(outside) == []


def test_many_files_in_one_folder_reuse_the_cached_fd(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target, _ = dirs
    real_open = os.open
    dir_opens = []

    def counting_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if flags & os.O_DIRECTORY:
            dir_opens.append(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    with RestoreTarget(target) as t:
        t.make_dir([b"a", b"b", b"c"])
        monkeypatch.setattr(rt.os, "open", counting_open)
        for i in range(50):
            t.write_file([b"a", b"b", b"c", b"f%d" % i], [b"x"])
        monkeypatch.undo()
    assert dir_opens == []
    assert len(os.listdir(target / "a" / "b" / "c")) == 50


def test_use_after_close(dirs: tuple[Path, Path]) -> None:
    target, _ = dirs
    with RestoreTarget(target) as t:
        pass
    with pytest.raises(ValueError):
        t.make_dir([b"a"])
    with pytest.raises(ValueError):
        t.write_file([b"a"], [b"x"])
    assert listing(target) == []
