"""Archives stored member-wise: byte-identical round trips, equivalence, --expand, and every
kind of broken archive stored plain (with a warning, never an error)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
import time
import zipfile
import zlib

import pytest

from archive_helpers import (gzip_file, member_bytes, redeflate_zip, sha256, tree_files, write_tar, write_zip,
                             zstd_file)
from strongroom.archives import store as store_mod
from strongroom.archives.detect import detect
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.restore import run_restore
from strongroom.tree import ARCHIVE, FILE

MEMBERS = {f"general/{i:03d}.json": member_bytes(f"m{i}", 2000 + 700 * i) for i in range(12)}
MEMBERS["users.json"] = member_bytes("users", 150_000)  # bigger than the level-detection window


def backup(repo, path, **kw):
    warnings = []
    result = run_backup(repo, BackupOptions(paths=[str(path)], expand_archives=True, **kw), warn=warnings.append)
    return result, warnings


def node_of(repo, snap, path):
    tree = bytes.fromhex(snap.tree)
    parts = [p for p in os.fsencode(str(path)).split(b"/") if p]
    for i, part in enumerate(parts):
        node = next(n for n in repo.load_tree(tree) if n.name == part)
        if i < len(parts) - 1:
            tree = node.subtree
    return node


def restored(tmp_path, src, name="out"):
    return tmp_path / name / str(src).lstrip("/")


def make(kind: str, tmp_path, members=MEMBERS):
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    if kind.startswith("zip-deflate-"):
        path = folder / "export.zip"
        write_zip(path, members, level=int(kind.rsplit("-", 1)[1]), dirs=("general",))
    elif kind == "zip-stored":
        path = folder / "export.zip"
        write_zip(path, members, compression=zipfile.ZIP_STORED)
    elif kind == "zip64":
        path = folder / "export.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                with zf.open(name, "w", force_zip64=True) as f:
                    f.write(data)
    else:
        tar = folder / "export.tar"
        write_tar(tar, members, dirs=("general",), symlinks={"latest.json": "general/000.json"})
        if kind == "tar":
            path = tar
        elif kind.startswith("tar.gz-"):
            path = folder / "export.tar.gz"
            gzip_file(tar, path, level=int(kind.rsplit("-", 1)[1]))
            tar.unlink()
        else:
            path = folder / "export.tar.zst"
            zstd_file(tar, path, level=int(kind.rsplit("-", 1)[1]))
            tar.unlink()
    return path


KINDS = ["zip-stored", "zip-deflate-1", "zip-deflate-6", "zip-deflate-9", "zip64", "tar", "tar.gz-9", "tar.gz-6",
         "tar.gz-1", "tar.zst-3", "tar.zst-19"]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_byte_identical(repo, tmp_path, kind):
    path = make(kind, tmp_path)
    original = sha256(path)
    result, warnings = backup(repo, path)
    assert warnings == [] and result.summary.errors == 0
    [info] = result.archives
    assert (info["stored"], info["fidelity"]) == ("members", "identical")
    node = node_of(repo, result.snapshot, path)
    assert node.type == ARCHIVE and node.archive.sha256.hex() == original and node.size == path.stat().st_size
    if kind.startswith("zip-deflate") or kind == "zip64":
        assert (info["reencoded_members"], info["verbatim_members"]) == (len(MEMBERS), 0)
    res = run_restore(repo, result.snapshot, str(tmp_path / "out"), verify=True)
    assert res.errors == [] and res.verified == 1
    assert res.archives == [{"path": str(path), "format": node.archive.format, "restored": "identical"}]
    out = restored(tmp_path, path)
    assert sha256(out) == original
    assert out.stat().st_mtime_ns == path.stat().st_mtime_ns


@pytest.mark.parametrize("kind", ["zip-deflate-6", "tar", "tar.gz-9", "tar.zst-3"])
def test_expand_restores_members_as_a_folder(repo, tmp_path, kind):
    path = make(kind, tmp_path)
    result, _ = backup(repo, path)
    res = run_restore(repo, result.snapshot, str(tmp_path / "out"), expand=True)
    assert res.errors == [] and res.archives == [{"path": str(path), "format": result.archives[0]["format"],
                                                  "restored": "expanded"}]
    folder = restored(tmp_path, path)
    assert folder.is_dir()
    files = tree_files(folder)
    expected = {k: v for k, v in MEMBERS.items()}
    if kind.startswith("tar"):
        assert os.readlink(folder / "latest.json") == "general/000.json"
        files.pop("latest.json")
        assert (folder / "general" / "000.json").stat().st_mtime_ns == 1714560002 * 10**9
        assert oct((folder / "general" / "000.json").stat().st_mode & 0o777) == oct(0o640)
        assert oct((folder / "general").stat().st_mode & 0o777) == oct(0o750)
    else:
        zip_time = int(time.mktime((2024, 5, 1, 12, 0, 2, 0, 0, -1))) * 10**9
        assert (folder / "users.json").stat().st_mtime_ns == zip_time
        assert oct((folder / "users.json").stat().st_mode & 0o777) == oct(0o640)
    assert files == expected


def test_members_zlib_cannot_reproduce_keep_their_compressed_bytes_and_stay_identical(repo, tmp_path):
    (tmp_path / "src").mkdir()
    plain = tmp_path / "plain.zip"
    write_zip(plain, MEMBERS)
    path = tmp_path / "src" / "mixed.zip"
    foreign = {"general/003.json", "general/007.json", "users.json"}
    redeflate_zip(plain, path, foreign=foreign.__contains__)  # memLevel 9 + Z_FILTERED: not tried
    result, warnings = backup(repo, path)
    assert warnings == []
    [info] = result.archives
    assert (info["fidelity"], info["reencoded_members"], info["verbatim_members"]) == (
        "identical", len(MEMBERS) - 3, 3)
    run_restore(repo, result.snapshot, str(tmp_path / "out"))
    assert sha256(restored(tmp_path, path)) == sha256(path)
    res = run_restore(repo, result.snapshot, str(tmp_path / "exp"), expand=True)
    assert res.errors == [] and tree_files(restored(tmp_path, path, "exp")) == MEMBERS


def test_zip_from_another_deflater_is_stored_plain(repo, tmp_path):
    """No member reproducible: member-wise it would be stored twice; plain is identical and cheaper."""
    (tmp_path / "src").mkdir()
    plain = tmp_path / "plain.zip"
    write_zip(plain, MEMBERS)
    path = tmp_path / "src" / "foreign.zip"
    redeflate_zip(plain, path)
    result, warnings = backup(repo, path)
    assert result.summary.errors == 0 and len(warnings) == 1
    assert "not reproducible with zlib" in warnings[0] and result.archives[0]["stored"] == "plain"
    assert node_of(repo, result.snapshot, path).type == FILE
    run_restore(repo, result.snapshot, str(tmp_path / "out"))
    assert sha256(restored(tmp_path, path)) == sha256(path)


def test_tar_gz_that_zlib_cannot_reproduce_restores_equivalent(repo, tmp_path):
    (tmp_path / "src").mkdir()
    tar = tmp_path / "x.tar"
    write_tar(tar, MEMBERS)
    raw = tar.read_bytes()
    c = zlib.compressobj(6, zlib.DEFLATED, 31, 9, zlib.Z_FILTERED)  # gzip wrapper, unusual parameters
    path = tmp_path / "src" / "x.tar.gz"
    path.write_bytes(c.compress(raw) + c.flush())
    result, warnings = backup(repo, path)
    assert warnings == [] and result.archives[0]["fidelity"] == "equivalent"
    res = run_restore(repo, result.snapshot, str(tmp_path / "out"), verify=True)
    assert res.errors == [] and res.archives[0]["restored"] == "equivalent"
    out = restored(tmp_path, path)
    assert sha256(out) != sha256(path)  # different compressed bytes ...
    assert gzip.decompress(out.read_bytes()) == raw  # ... of the very same tar stream


def test_recognised_by_magic_bytes_not_by_name(repo, tmp_path):
    (tmp_path / "src").mkdir()
    write_zip(tmp_path / "src" / "export.dat", MEMBERS)
    (tmp_path / "src" / "notes.zip").write_bytes(b"just text, despite the name\n" * 100)
    result, warnings = backup(repo, tmp_path / "src")
    assert warnings == []
    assert [(a["path"].rsplit("/", 1)[1], a["stored"]) for a in result.archives] == [("export.dat", "members")]
    assert node_of(repo, result.snapshot, tmp_path / "src" / "notes.zip").type == FILE
    with open(tmp_path / "src" / "notes.zip", "rb") as f:
        assert detect(f.fileno()) is None


def test_without_the_option_archives_are_plain_files(repo, tmp_path):
    path = make("zip-deflate-6", tmp_path)
    result = run_backup(repo, BackupOptions(paths=[str(path)]))
    assert result.archives == [] and node_of(repo, result.snapshot, path).type == FILE


def trees_above(repo, snap, path) -> list[bytes]:
    """The ids of the trees from the snapshot's root down to the one holding ``path``."""
    trees = [bytes.fromhex(snap.tree)]
    for part in [p for p in os.fsencode(str(path)).split(b"/") if p][:-1]:
        trees.append(next(n for n in repo.load_tree(trees[-1]) if n.name == part).subtree)
    return trees


def test_unchanged_archive_reuses_its_node(repo, tmp_path):
    path = make("tar.gz-9", tmp_path)
    first, _ = backup(repo, path)
    second, _ = backup(repo, path)
    assert (second.summary.files_unchanged, second.summary.bytes_read) == (1, 0)
    # Nothing new but the trees of ancestors whose own metadata changed in between: /tmp changes
    # whenever anything is created in it, which other processes do at any time.
    before, after = trees_above(repo, first.snapshot, path), trees_above(repo, second.snapshot, path)
    assert before[-1] == after[-1]
    assert second.summary.blobs_added == sum(a != b for a, b in zip(before, after))
    assert second.archives == []
    assert node_of(repo, second.snapshot, path).archive == node_of(repo, first.snapshot, path).archive


def test_rezipped_export_deduplicates_member_wise(repo, tmp_path):
    """Day 2 re-zips the export with one message appended and the members in another order:
    as plain files the two zips share almost nothing; member-wise only the change is new."""
    day1 = dict(MEMBERS)
    day2 = dict(reversed(list(MEMBERS.items())))
    day2["general/005.json"] = MEMBERS["general/005.json"] + b'{"ts":"1","text":"one more message"}\n'
    src = tmp_path / "src"
    src.mkdir()
    path = src / "export.zip"
    added = {}
    for expand in (False, True):
        write_zip(path, day1)
        run_backup(repo, BackupOptions(paths=[str(src)], expand_archives=expand, force=True))
        write_zip(path, day2, level=9)
        added[expand] = run_backup(repo, BackupOptions(paths=[str(src)], expand_archives=expand,
                                                       force=True)).summary.bytes_added
    zip_size = path.stat().st_size
    assert added[False] > zip_size * 0.9  # plain: the whole re-zipped file is new
    assert added[True] < zip_size * 0.25  # member-wise: one changed member, skeleton and trees


# -- broken archives: stored plain, a warning, not an error ----------------------------------------

def _zip_bytes(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _patch_sizes(data: bytes, *, local_usize: int | None = None, central_usize: int | None = None) -> bytes:
    out = bytearray(data)
    if local_usize is not None:
        struct.pack_into("<I", out, 22, local_usize)
    if central_usize is not None:
        cd = out.find(b"PK\x01\x02")
        struct.pack_into("<I", out, cd + 24, central_usize)
    return bytes(out)


def _tar_with_name(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = 5
        tf.addfile(info, io.BytesIO(b"evil\n"))
    return buf.getvalue()


def _deflated_zip_with(data: bytes) -> bytes:
    return _zip_bytes({"a.txt": data}, zipfile.ZIP_DEFLATED)


def _broken_cases() -> dict[str, tuple[bytes, str]]:
    good = _zip_bytes({"a.txt": b"hello " * 100, "b.txt": b"world " * 100})
    bad_crc = bytearray(good)
    bad_crc[good.find(b"hello")] ^= 1
    encrypted = bytearray(good)
    struct.pack_into("<H", encrypted, 6, 1)
    struct.pack_into("<H", encrypted, encrypted.find(b"PK\x01\x02") + 8, 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("a.txt", b"bzip2 " * 100)
    deflated = _deflated_zip_with(b"x" * 50_000)
    gz = gzip.compress(_tar_with_name("ok.txt"), mtime=0)
    return {
        "truncated zip": (good[:len(good) - 30], "no end of central directory"),
        "bad crc": (bytes(bad_crc), "CRC-32 mismatch"),
        "encrypted member": (bytes(encrypted), "is encrypted"),
        "unsupported method": (buf.getvalue(), "compression method 12 is not supported"),
        "dotdot name": (_zip_bytes({"../evil.txt": b"x"}), "is unsafe"),
        "absolute name": (_zip_bytes({"/etc/passwd": b"x"}), "is unsafe"),
        "empty component": (_zip_bytes({"a//b.txt": b"x"}), "is unsafe"),
        "duplicate names": (_zip_bytes({"a.txt": b"1"}) [:0] + _dup_zip(), "duplicate member"),
        "file and folder of one name": (_zip_bytes({"a": b"1", "a/b": b"2"}), "below a file"),
        "claimed size larger than real": (_patch_sizes(deflated, local_usize=60_000, central_usize=60_000),
                                          "but its header claims 60000"),
        "claimed size smaller than real": (_patch_sizes(deflated, local_usize=1000, central_usize=1000),
                                           "larger than the 1000 bytes its header claims"),
        "huge claimed size": (_patch_sizes(deflated, central_usize=0xFFFFFFF0), "members claim 4294967280 bytes"),
        "tar dotdot": (_tar_with_name("../../etc/cron.d/evil"), "is unsafe"),
        "tar absolute": (_tar_with_name("/etc/evil"), "is unsafe"),
        "truncated tar.gz": (gz[:len(gz) - 20], "truncated"),
        "tar.gz bad trailer": (gz[:-8] + b"\0" * 8, "gzip CRC-32 or length mismatch"),
    }


def _dup_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", b"1")
        with pytest.warns(UserWarning):
            zf.writestr("a.txt", b"2")
    return buf.getvalue()


@pytest.mark.parametrize("case", list(_broken_cases()))
def test_broken_archive_is_stored_plain_with_a_warning(repo, tmp_path, case):
    data, reason = _broken_cases()[case]
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "export.bin"
    path.write_bytes(data)
    result, warnings = backup(repo, path)
    assert result.summary.errors == 0 and not result.partial
    assert len(warnings) == 1 and "stored as a plain file" in warnings[0] and reason in warnings[0], warnings
    assert result.archives[0]["stored"] == "plain" and reason in result.archives[0]["reason"]
    assert node_of(repo, result.snapshot, path).type == FILE
    res = run_restore(repo, result.snapshot, str(tmp_path / "out"))
    assert res.errors == [] and restored(tmp_path, path).read_bytes() == data


def test_decompression_is_bounded_by_the_budget(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "EXPANSION_RATIO", 2)
    monkeypatch.setattr(store_mod, "EXPANSION_SLACK", 0)
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "bomb.zip"
    path.write_bytes(_deflated_zip_with(b"\0" * 2_000_000))  # honest header, 2 MB from ~2 KB
    result, warnings = backup(repo, path)
    assert result.summary.errors == 0 and "more than" in warnings[0] and "allowed" in warnings[0]
    # and when the header lies about the size, the bytes actually inflated are what count
    path.write_bytes(_patch_sizes(_deflated_zip_with(b"\0" * 2_000_000), central_usize=10, local_usize=10))
    result, warnings = backup(repo, path, force=True)
    assert "larger than the 10 bytes" in warnings[0]


def test_member_sha_is_checked_on_restore(repo, tmp_path, monkeypatch):
    """If this machine's deflate produced other bytes than at backup, restore says so."""
    path = make("zip-deflate-6", tmp_path)
    result, _ = backup(repo, path)
    from strongroom.archives import rebuild
    monkeypatch.setattr(rebuild, "raw_deflate", lambda level: zlib.compressobj(level, zlib.DEFLATED, -15, 9))
    res = run_restore(repo, result.snapshot, str(tmp_path / "out"))
    assert len(res.errors) == 1 and "differs from the original (SHA-256 mismatch" in res.errors[0]


def test_layout_blobs_are_cut_by_content_so_an_added_member_changes_few(repo, tmp_path):
    # Cuts follow the (keyed, so per-test random) chunk ids: one member in 64 after 8 KiB of layout.
    # 1200 members give ~18 layout blobs on average; fewer than 4 is vanishingly unlikely.
    members = {f"d/{i:04d}.json": member_bytes(f"s{i}", 300) for i in range(1200)}
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "many.zip"
    write_zip(path, members)
    first, _ = backup(repo, path)
    members["d/0600a.json"] = b'{"new": true}\n'
    write_zip(path, dict(sorted(members.items())))
    second, _ = backup(repo, path)
    before = node_of(repo, first.snapshot, path).archive.layout
    after = node_of(repo, second.snapshot, path).archive.layout
    assert len(before) >= 4
    # New: the blob holding the new member (two if that member is itself a cut point, one time in
    # 64) and the last one (the central directory it describes grew by an entry).
    assert len(set(after) - set(before)) <= 3


@pytest.mark.slow
def test_memory_stays_bounded_for_a_large_member(tmp_path):
    """A 256 MiB deflated zip member: backup's peak RSS grows far less than that."""
    import subprocess
    import sys
    src = tmp_path / "src"
    src.mkdir()
    line = b'{"ts":"1700000000.000100","user":"U024BE7LH","text":"the same message, again and again"}\n'
    with zipfile.ZipFile(src / "big.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("big.jsonl", "w", force_zip64=True) as f:
        for i in range(256 * 1024 * 1024 // (len(line) * 1024)):
            f.write(line.replace(b"0100", b"%04d" % (i % 10000)) * 1024)
    script = f"""
import resource, sys
from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.crypto.keyfile import KdfParams
from strongroom.repository import Repository
from strongroom.storage.local import LocalStorage
repo = Repository.init(LocalStorage({str(tmp_path / 'repo')!r}), b"pw", kdf=KdfParams(memory_kib=64, iterations=1, lanes=1))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = run_backup(repo, BackupOptions(paths=[{str(src)!r}], expand_archives=True))
assert r.archives[0]["stored"] == "members", r.archives
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grew_kib = int(out.stdout.split()[-1])
    print(f"peak RSS grew by {grew_kib} KiB")
    assert grew_kib < 64 * 1024, f"peak RSS grew by {grew_kib} KiB"  # measured: ~21 MiB


def test_highly_compressible_member_larger_than_the_detection_window_is_reencoded(repo, tmp_path):
    """zlib emits nothing for the first 256 KiB of very repetitive data: the level is then
    chosen on a longer prefix (this once sent such members to the verbatim path)."""
    data = b"".join(b'{"ts":"%d","user":"U1","text":"good morning"}\n' % (i % 50) for i in range(9000))
    assert len(data) > 300_000
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "x.zip"
    write_zip(path, {"big.json": data, "small.json": b"{}"})
    result, _ = backup(repo, path)
    assert (result.archives[0]["reencoded_members"], result.archives[0]["verbatim_members"]) == (2, 0)
