"""The backup's catalogue shares its export files out between two processes (catalog_parallel):
the catalogue, the memos and the warnings are those one process gives, whatever the child does
(finishes, fails, is killed, finds a source file changed under it)."""

from __future__ import annotations

import fcntl
import os
import signal
import time

import pytest

from strongroom.forked import available_cores
from strongroom.messages import catalog_build, catalog_parallel
from strongroom.messages.catalog_build import build_catalog
from strongroom.messages.catalog_index import MessageIndex
from strongroom.writer import BlobWriter
from conftest import StoppedChild
from tests.test_catalog_segments import (SegmentedReader, WholeReader, _backup, catalog_stats_of_backups, night,
                                         write)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or available_cores() < 2,
                                reason="needs fork and two cores")

FILES = 6


def _night(src, n: int) -> None:
    """Night ``n`` of FILES export files, each a little different, each changed a little."""
    for f in range(FILES):
        lines = [dict(m, x=f"{m['x']} in file {f}") for m in night(n + f)]
        write(src / f"team{f}.chat.jsonl", lines)


@pytest.fixture
def shared(monkeypatch):
    """Every catalogue with more than nothing to read is shared out, and the child is sure to take
    files: this process takes its first file only once the child has taken one. Gives the list
    of what this process took back from each child: (parts, files to read again)."""
    monkeypatch.setattr(catalog_parallel, "MIN_FORKED_BYTES", 1)
    parent = os.getpid()
    take = catalog_parallel._Claims.take

    def child_first(self) -> int:
        if os.getpid() == parent and not getattr(self, "waited", False):
            self.waited = True
            deadline = time.monotonic() + 30
            while _count(self) == 0 and time.monotonic() < deadline:
                time.sleep(0.002)
        return take(self)

    monkeypatch.setattr(catalog_parallel._Claims, "take", child_first)
    taken = []
    original = catalog_parallel._take_share

    def take_share(builder, jobs, path, final):
        parts = len(builder.parts)
        again = original(builder, jobs, path, final)
        taken.append((len(builder.parts) - parts, len(again)))
        return again

    monkeypatch.setattr(catalog_parallel, "_take_share", take_share)
    return taken


def _count(claims) -> int:
    return int.from_bytes(os.pread(claims._file.fileno(), 8, 0).ljust(8, b"\0"), "little")


def _one_process(repo, tree: bytes) -> str:
    with BlobWriter(repo) as writer:  # the whole-file reader, one process, no memo
        root, _ = build_catalog(repo, writer, tree, readers=[WholeReader()])
        writer.flush()
    return root.hex()


def test_two_processes_write_the_catalogue_one_process_writes(small_chunks_repo, tmp_path, monkeypatch, shared):
    repo, src = small_chunks_repo, tmp_path / "src"
    stats = catalog_stats_of_backups(monkeypatch)
    for n in range(3):
        _night(src, n)
        snap = _backup(repo, src, SegmentedReader(), monkeypatch)
        assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))
        parts, again = shared[-1]
        assert parts >= 1 and again == 0  # the child wrote parts of this catalogue
        s = stats[-1]
        assert (s.parts, s.files_read, s.sources_read) == (FILES, FILES, FILES)
        if n:  # the memos the child wrote are used the next night, by whichever process
            assert s.pieces_reused > s.pieces_parsed > 0
    with MessageIndex(repo) as index:
        assert index.memos.count() == FILES


@pytest.mark.parametrize("failure", ["raises", "killed", "killed holding the claims' lock"])
def test_a_child_that_fails_costs_time_not_the_catalogue(small_chunks_repo, tmp_path, monkeypatch, shared, failure):
    repo, src = small_chunks_repo, tmp_path / "src"
    stats = catalog_stats_of_backups(monkeypatch)
    _night(src, 0)
    _backup(repo, src, SegmentedReader(), monkeypatch)
    work = catalog_parallel._child_work

    def failing(builder, jobs, raw, claims, out):
        n = claims.take()  # a file taken, and never given back
        assert n < len(jobs)
        if failure == "raises":
            raise RuntimeError("a bug")
        if failure == "killed holding the claims' lock":
            fcntl.lockf(claims._file.fileno(), fcntl.LOCK_EX)
        os.kill(os.getpid(), signal.SIGKILL)
        work(builder, jobs, raw, claims, out)  # never reached

    monkeypatch.setattr(catalog_parallel, "_child_work", failing)
    _night(src, 1)
    snap = _backup(repo, src, SegmentedReader(), monkeypatch)  # _backup asserts: no warning
    assert len(shared) == 1  # the first night's child only: this one's result was not used
    assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))
    s = stats[-1]
    assert (s.parts, s.files_read, s.sources_read) == (FILES, FILES, FILES)
    assert s.pieces_reused > s.pieces_parsed > 0  # every memo was there to use
    with MessageIndex(repo) as index:
        assert index.memos.count() == FILES


def test_a_source_changed_under_the_child_is_read_from_the_repository(small_chunks_repo, tmp_path, monkeypatch,
                                                                      shared):
    repo, src = small_chunks_repo, tmp_path / "src"
    _night(src, 0)
    snap = _backup(repo, src, SegmentedReader(), monkeypatch)
    for f in range(FILES):  # every file changed since, at the same size
        path = src / f"team{f}.chat.jsonl"
        path.write_bytes(path.read_bytes().replace(b"lunch", b"LUNCH", 1))
    shared.clear()
    with BlobWriter(repo) as writer:
        root, stats = build_catalog(repo, writer, bytes.fromhex(snap.tree), readers=[SegmentedReader()],
                                    read_sources=True, parallel=True)
        writer.flush()
    assert root.hex() == snap.catalog  # the stored files' catalogue
    [(parts, again)] = shared
    assert again >= 1 and parts == 0  # the child found its files changed and gave them back
    assert (stats.files_read, stats.sources_read) == (FILES, 0)


def test_a_reader_failing_in_the_child_warns_once_as_in_one_process(small_chunks_repo, tmp_path, monkeypatch, shared):
    """A file the reader fails on costs its part and one warning, whichever process read it
    (here the child: it takes the largest file first)."""
    repo, src = small_chunks_repo, tmp_path / "src"

    class Fussy(SegmentedReader):
        def segment_reader(self, files, export, path, warn):
            inner = super().segment_reader(files, export, path, warn)
            if not path.endswith(f"team{FILES - 1}.chat.jsonl"):  # the largest
                return inner

            class Failing:
                initial = inner.initial

                def feed(self, state, data, final, warn):
                    raise ValueError("cannot read this one")
            return Failing()

    _night(src, 0)
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [Fussy()])
    from strongroom.commands.backup import BackupOptions, run_backup
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    [warning] = [w for w in result.warnings if "cannot read this one" in str(w)]
    assert "cannot catalogue the testchat export" in str(warning)
    [(parts, again)] = shared
    assert again >= 1  # the child gave it back
    with MessageIndex(repo) as index:
        index.ensure([result.snapshot])
        from strongroom.messages.catalog_query import Filters, search
        files = {r.record.text.rpartition(" in file ")[2] for r in search(index, [result.snapshot.id], Filters())}
    assert files == {str(f) for f in range(FILES - 1)}


def test_the_real_readers_in_two_processes_give_one_process_catalogue(repo, tmp_path, monkeypatch, shared):
    """Every export format of the sample exports (Slack, Mattermost, Telegram, Discord, WhatsApp),
    night after night, with the readers' context (users, chat names, date order) taken here and
    used in the child."""
    from strongroom.commands.backup import BackupOptions, run_backup
    from strongroom.samples import ExportParams, write_day
    src = tmp_path / "exports"
    params = ExportParams(messages_per_day=120, attachment_share=0.0)
    for day in range(3):
        write_day(src, day, params)
        result = run_backup(repo, BackupOptions(paths=[str(src)]))
        assert not result.warnings
        snap = result.snapshot
        with BlobWriter(repo) as writer:
            root, stats = build_catalog(repo, writer, bytes.fromhex(snap.tree))  # one process, no memo
            writer.flush()
        assert snap.catalog == root.hex()
        assert len(stats.platforms) == 5
        parts, again = shared[-1]
        assert parts >= 1 and again == 0


def test_an_interrupted_backup_leaves_no_child_and_no_scratch_file(small_chunks_repo, tmp_path, monkeypatch, shared):
    """Ctrl-C while both processes read: the child is ended and reaped, its file removed."""
    from strongroom.commands.backup import BackupOptions, run_backup
    repo, src = small_chunks_repo, tmp_path / "src"
    child = StoppedChild(tmp_path)

    def interrupted(self, job):  # once the child is reading (or after 20 s: then it is not found)
        child.wait()
        raise KeyboardInterrupt

    monkeypatch.setattr(catalog_parallel, "_child_work", child.stalling_share_work())
    monkeypatch.setattr(catalog_build.CatalogBuilder, "read_pieces", interrupted)
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [SegmentedReader()])
    _night(src, 0)
    child.assert_interrupted_promptly(lambda: run_backup(repo, BackupOptions(paths=[str(src)])),
                                      repo.scratch_folder(), "catalogue-share-")


def _zip_slack(src, day: int, params, extra: bytes = b"", method: int = 8, change: bool = False) -> None:
    """The sample Slack export of ``day`` as a zip (deflated, or ``method``; the folder itself
    removed), with an ``extra`` stored member if given, and with one letter of its messages
    changed if ``change``."""
    import shutil
    import zipfile
    from strongroom.samples import write_day
    work = src.parent / "unzipped"
    write_day(work, day, params)
    changed = not change
    with zipfile.ZipFile(src / "slack-export.zip", "w", method) as z:
        for path in sorted((work / "slack").rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                if not changed and b'"text": "' in data:
                    at = data.index(b'"text": "') + 9
                    data, changed = data[:at] + bytes([data[at] ^ 1]) + data[at + 1:], True
                info = zipfile.ZipInfo(path.relative_to(work / "slack").as_posix(), (2026, 11, 1, 0, 0, 0))
                z.writestr(info, data, compress_type=method)
        if extra:
            z.writestr(zipfile.ZipInfo("files/video.bin"), extra, compress_type=zipfile.ZIP_STORED)
    shutil.rmtree(work)


def _members_read_from_source(repo, snap) -> tuple[str, int, int]:
    """(catalogue root, files read, of them from their source) of ``snap``'s tree catalogued
    again as the backup does, and checks the root against one process reading the repository."""
    with BlobWriter(repo) as writer:
        root, stats = build_catalog(repo, writer, bytes.fromhex(snap.tree), read_sources=True, parallel=True)
        whole, _ = build_catalog(repo, writer, bytes.fromhex(snap.tree))
        writer.flush()
    assert root == whole
    return root.hex(), stats.files_read, stats.sources_read


def test_zip_members_are_read_from_the_archive_just_stored_by_both_processes(repo, tmp_path, monkeypatch, shared):
    from strongroom.commands.backup import BackupOptions, run_backup
    import zipfile
    from strongroom.samples import ExportParams
    src = tmp_path / "src"
    src.mkdir()
    params = ExportParams(messages_per_day=150, attachment_share=0.0, channels=4)
    for day in range(2):
        _zip_slack(src, day, params)
        result = run_backup(repo, BackupOptions(paths=[str(src)]))
        assert not result.warnings
        parts, again = shared[-1]
        assert parts >= 1 and again == 0  # the child read members too
    snap = result.snapshot
    root, files, from_source = _members_read_from_source(repo, snap)
    assert root == snap.catalog and files > 1 and from_source == files

    archive = src / "slack-export.zip"
    _zip_slack(src, 2, params, method=zipfile.ZIP_STORED)
    snap = run_backup(repo, BackupOptions(paths=[str(src)])).snapshot
    size = archive.stat().st_size
    _zip_slack(src, 2, params, method=zipfile.ZIP_STORED, change=True)  # a valid archive of that size
    assert archive.stat().st_size == size
    root, files, from_source = _members_read_from_source(repo, snap)
    assert root == snap.catalog and from_source == 0  # read from the repository instead

    messages = sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    _zip_slack(src, 1, params, extra=os.urandom(5 * messages))
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    root, files, from_source = _members_read_from_source(repo, result.snapshot)
    assert root == result.snapshot.catalog
    assert from_source == 0  # the messages are a sixth of the archive: not worth hashing it


def test_an_archive_written_to_while_a_member_is_read_counts_as_changed(tmp_path):
    """The archive is hashed once, then trusted only while nothing writes to it: a write while a
    member is read makes that read count as changed (the repository's copy is read instead), and
    the archive is hashed again before the next member."""
    import zipfile
    from strongroom.messages.catalog_sources import LocalArchive, SourceChanged
    from strongroom.messages.catalog_parallel import LocalSource
    from strongroom.writer import content_hasher
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("general/2026-11-01.json", b"[]" + os.urandom(3 << 20).hex().encode())
    data = path.read_bytes()
    digest = content_hasher()
    digest.update(data)
    local = LocalSource(str(path), len(data), digest.digest(), "general/2026-11-01.json")
    archive = LocalArchive.open(local)
    assert archive is not None and archive.usable()
    assert b"".join(archive.blocks(local.member)).startswith(b"[]")
    blocks = archive.blocks(local.member)
    next(blocks)
    os.utime(path)  # a write of the same bytes would do the same: the change time moves
    with pytest.raises(SourceChanged):
        list(blocks)
    assert not archive.usable()
    archive.close()
    assert LocalArchive.open(local._replace(content_hash=bytes(32))) is None  # not the snapshot's bytes
