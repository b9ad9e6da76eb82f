"""The backup begins its catalogue while it still stores files (catalog_early): once a folder
directly below the backed-up folder is stored, a forked copy reads its changed export files. The
catalogue, the memos and the warnings are those of a catalogue begun after the backup, whatever
the copy does (finishes, fails, is still at work, read files the catalogue does not ask for)."""

from __future__ import annotations

import os
import time

import pytest

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.forked import available_cores
from strongroom.messages import catalog_build, catalog_early, catalog_parallel
from strongroom.messages.catalog_build import build_catalog
from strongroom.messages.catalog_index import MessageIndex
from strongroom.writer import BlobWriter
from conftest import StoppedChild
from tests.test_catalog_segments import SegmentedReader, WholeReader, catalog_stats_of_backups, night, write

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or available_cores() < 2,
                                reason="needs fork and two cores")

FOLDERS = 4  # folders directly below the backed-up one, two export files each


def _night(src, n: int) -> None:
    for f in range(FOLDERS):
        for g in range(2):
            lines = [dict(m, x=f"{m['x']} in folder {f} file {g}") for m in night(n + f + g)]
            # (names differ between folders: a memo is keyed by the path in its export, here the name)
            write(src / f"team{f}" / f"room{f}{g}.chat.jsonl", lines)


@pytest.fixture
def early(monkeypatch):
    """Every stored folder may begin the catalogue (no minimum of bytes between two starts, a
    share for any work at all). Gives what the catalogue took from the early copies: a list of
    (parts written from a copy's file, files given back to read here) per early share."""
    monkeypatch.setattr(catalog_early, "MIN_STORED_BETWEEN", 0)
    monkeypatch.setattr(catalog_parallel, "MIN_FORKED_BYTES", 1)
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [SegmentedReader()])
    taken = []
    original = catalog_parallel._take_share

    def take_share(builder, jobs, path, final):
        parts = len(builder.parts)
        again = original(builder, jobs, path, final)
        if not any(final(job) is job for job in jobs):  # an early share's (planned by another builder)
            taken.append((len(builder.parts) - parts, len(again)))
        return again

    monkeypatch.setattr(catalog_parallel, "_take_share", take_share)
    return taken


def _planners(monkeypatch) -> list:
    """The builders that plan early shares, as backups make them."""
    planners = []
    init = catalog_early.EarlyCatalogue.__init__

    def recording(self, *args):
        init(self, *args)
        planners.append(self._planner)

    monkeypatch.setattr(catalog_early.EarlyCatalogue, "__init__", recording)
    return planners


def _shares_started(monkeypatch) -> list[list[str]]:
    """The file names of each early share's jobs, as it starts."""
    started = []
    stored = catalog_early.EarlyCatalogue.folder_stored

    def recording(self, path, tree_id, read):
        before = len(self.shares)
        stored(self, path, tree_id, read)
        if len(self.shares) > before:
            started.append(sorted(job.path.rpartition("/")[2] for job in self.shares[-1].jobs))

    monkeypatch.setattr(catalog_early.EarlyCatalogue, "folder_stored", recording)
    return started


def _one_process(repo, tree: bytes) -> str:
    with BlobWriter(repo) as writer:  # the whole-file reader, one process, no memo
        root, _ = build_catalog(repo, writer, tree, readers=[WholeReader()])
        writer.flush()
    return root.hex()


def _backup(repo, src):
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert not result.warnings
    return result.snapshot


def _wait_for_copies(monkeypatch) -> None:
    """The catalogue waits for each early copy to finish before it takes turns with it, so that
    the copies' work is sure to count (the copies take files as fast as they can)."""
    original = catalog_parallel.Share.take_turns

    def take_turns(self, read):
        if self._child is not None:
            deadline = time.monotonic() + 30
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.005)
        original(self, read)

    monkeypatch.setattr(catalog_parallel.Share, "take_turns", take_turns)


def test_copies_started_while_folders_are_stored_give_the_catalogue_of_one_process(
        small_chunks_repo, tmp_path, monkeypatch, early):
    repo, src = small_chunks_repo, tmp_path / "src"
    stats = catalog_stats_of_backups(monkeypatch)
    started = _shares_started(monkeypatch)
    _wait_for_copies(monkeypatch)
    planners = _planners(monkeypatch)
    work = catalog_parallel._child_work
    niceness = tmp_path / "niceness"

    def noting_priority(builder, jobs, raw, claims, out):  # in each copy
        with open(niceness, "a") as f:
            f.write(f"{builder in planners} {os.getpriority(os.PRIO_PROCESS, 0)}\n")
        work(builder, jobs, raw, claims, out)

    monkeypatch.setattr(catalog_parallel, "_child_work", noting_priority)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for n in range(3):
        _night(src, n)
        snap = _backup(repo, src)
        assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))
        assert started and set(started[0]) <= {"room00.chat.jsonl", "room01.chat.jsonl"}  # one folder's files
        parts, again = early[-1]
        assert parts >= 1 and again == 0  # the early copy's parts are this catalogue's
        s = stats[-1]
        assert (s.parts, s.files_read, s.sources_read) == (2 * FOLDERS, 2 * FOLDERS, 2 * FOLDERS)
        if n:  # the memos an early copy wrote are used the next night
            assert s.pieces_reused > s.pieces_parsed > 0
        started.clear()
    with MessageIndex(repo) as index:
        assert index.memos.count() == 2 * FOLDERS
    # the early copies yield the cores to the backup; the catalogue's own copy (if the early ones
    # left it any file to read) does not
    copies = set(niceness.read_text().split("\n")[:-1])
    early_copy = f"True {min(mine + catalog_early.EARLY_NICE, 19)}"
    assert early_copy in copies and copies <= {early_copy, f"False {mine}"}


def test_files_an_early_copy_read_that_the_catalogue_does_not_ask_for_are_dropped(
        small_chunks_repo, tmp_path, monkeypatch, early):
    """A part depends only on its key, memo key and path: a file the copy planned under another
    key (here: every one) counts for nothing, and the catalogue reads it itself."""
    repo, src = small_chunks_repo, tmp_path / "src"
    stats = catalog_stats_of_backups(monkeypatch)
    _wait_for_copies(monkeypatch)
    plan = catalog_build.CatalogBuilder.plan_jobs

    def other_keys(self, tree_id, prefix):
        jobs = plan(self, tree_id, prefix)
        for job in jobs:
            job.key = bytes(32)
        return jobs

    monkeypatch.setattr(catalog_build.CatalogBuilder, "plan_jobs", other_keys)
    _night(src, 0)
    snap = _backup(repo, src)
    assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))
    assert early and set(early) == {(0, 0)}  # the early copies' files counted for nothing
    s = stats[-1]
    assert (s.parts, s.files_read) == (2 * FOLDERS, 2 * FOLDERS)
    with MessageIndex(repo) as index:
        assert index.memos.count() == 2 * FOLDERS  # memos of the files read, none of the copies'


@pytest.mark.parametrize("failure", ["raises", "killed"])
def test_an_early_copy_that_fails_costs_time_not_the_catalogue(small_chunks_repo, tmp_path, monkeypatch, early,
                                                               failure):
    import signal
    repo, src = small_chunks_repo, tmp_path / "src"
    stats = catalog_stats_of_backups(monkeypatch)
    _night(src, 0)
    _backup(repo, src)
    early.clear()
    work = catalog_parallel._child_work
    parent = os.getpid()
    planners = _planners(monkeypatch)

    def failing(builder, jobs, raw, claims, out):
        if builder not in planners:  # the catalogue's own copy works; the early ones fail
            return work(builder, jobs, raw, claims, out)
        n = claims.take()  # a file taken, and never given back
        assert n < len(jobs) and os.getpid() != parent
        if failure == "raises":
            raise RuntimeError("a bug")
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(catalog_parallel, "_child_work", failing)
    _night(src, 1)
    snap = _backup(repo, src)
    assert planners and early == []  # nothing taken from the early copies
    assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))
    s = stats[-1]
    assert (s.parts, s.files_read) == (2 * FOLDERS, 2 * FOLDERS)
    assert s.pieces_reused > s.pieces_parsed > 0
    with MessageIndex(repo) as index:
        assert index.memos.count() == 2 * FOLDERS


def test_an_interrupted_backup_leaves_no_early_copy_and_no_scratch_file(small_chunks_repo, tmp_path, monkeypatch,
                                                                        early):
    """Ctrl-C while the backup still stores files and an early copy reads: the copy is ended and
    reaped, its file removed."""
    repo, src = small_chunks_repo, tmp_path / "src"
    child = StoppedChild(tmp_path)
    stored = catalog_early.EarlyCatalogue.folder_stored

    def interrupted(self, path, tree_id, read):
        stored(self, path, tree_id, read)
        if self.shares:  # once the copy is reading
            child.wait()
            raise KeyboardInterrupt

    monkeypatch.setattr(catalog_parallel, "_child_work", child.stalling_share_work())
    monkeypatch.setattr(catalog_early.EarlyCatalogue, "folder_stored", interrupted)
    _night(src, 0)
    child.assert_interrupted_promptly(lambda: run_backup(repo, BackupOptions(paths=[str(src)])),
                                      repo.scratch_folder(), "catalogue-share-")


def _flushes(monkeypatch) -> list[bool]:
    """Each writer flush from now on, as its ``train`` argument (False: an early start's)."""
    flushes = []
    flush = BlobWriter.flush

    def counted(self, *, train=True):
        flushes.append(train)
        flush(self, train=train)

    monkeypatch.setattr(BlobWriter, "flush", counted)
    return flushes


def test_folders_stored_close_together_share_one_early_start(small_chunks_repo, tmp_path, monkeypatch):
    """Each early start flushes the backup's packs and writes an index file: a folder begins one
    only once MIN_STORED_BETWEEN bytes were read since the last start (a few hundred KiB of
    folders: none at all)."""
    repo, src = small_chunks_repo, tmp_path / "src"
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [SegmentedReader()])
    monkeypatch.setattr(catalog_parallel, "MIN_FORKED_BYTES", 1 << 40)  # (planned, never started)
    flushes = _flushes(monkeypatch)
    read_at = []
    stored = catalog_early.EarlyCatalogue.folder_stored

    def recording(self, path, tree_id, read):
        read_at.append(read)
        stored(self, path, tree_id, read)

    monkeypatch.setattr(catalog_early.EarlyCatalogue, "folder_stored", recording)
    _night(src, 0)
    _backup(repo, src)
    assert len(read_at) == FOLDERS and flushes.count(False) == 0
    between = read_at[1] * 3 // 4  # about every second folder
    monkeypatch.setattr(catalog_early, "MIN_STORED_BETWEEN", between)
    for n in (1, 2):
        _night(src, n)
        flushes.clear()
        read_at.clear()
        snap = _backup(repo, src)
        expected, last = 0, 0
        for read in read_at:
            if read - last >= between:
                expected, last = expected + 1, read
        assert 1 < expected < FOLDERS and flushes.count(False) == expected
        assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))


def test_a_backup_flushes_for_early_starts_at_most_max_starts_times(small_chunks_repo, tmp_path, monkeypatch):
    """However many folders (here with no minimum of bytes between starts), a backup adds at most
    MAX_STARTS packs and index files for its early starts."""
    repo, src = small_chunks_repo, tmp_path / "src"
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [SegmentedReader()])
    monkeypatch.setattr(catalog_early, "MIN_STORED_BETWEEN", 0)
    monkeypatch.setattr(catalog_early, "MAX_STARTS", 3)
    flushes = _flushes(monkeypatch)
    for f in range(6):
        (src / f"folder{f}").mkdir(parents=True)
        (src / f"folder{f}" / "notes.txt").write_text(f"no export here {f}\n" * 100)
    write(src / "folder5" / "team.chat.jsonl", night(0))
    snap = _backup(repo, src)
    assert flushes.count(False) == 3
    assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))  # found by the catalogue itself


def test_folders_waiting_for_a_busy_copy_start_as_soon_as_it_is_done(small_chunks_repo, tmp_path, monkeypatch):
    """A folder stored while a copy is still at work waits; the copy's end is noticed as the backup
    goes on reading files (every READING_STEP bytes), not only when the next folder is stored."""
    from strongroom.commands import backup
    repo, src = small_chunks_repo, tmp_path / "src"
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [SegmentedReader()])
    monkeypatch.setattr(catalog_early, "MIN_STORED_BETWEEN", 0)
    monkeypatch.setattr(catalog_parallel, "MIN_FORKED_BYTES", 1)
    monkeypatch.setattr(backup, "READING_STEP", 1)
    events = []
    stored = catalog_early.EarlyCatalogue.folder_stored

    def recording(self, path, tree_id, read):
        events.append(("stored", os.path.basename(path).decode()))
        stored(self, path, tree_id, read)

    monkeypatch.setattr(catalog_early.EarlyCatalogue, "folder_stored", recording)
    start = catalog_parallel.Share.start.__func__

    def starting(cls, builder, jobs, **kw):
        share = start(cls, builder, jobs, **kw)
        if share is not None and kw.get("nice"):
            events.append(("started", sorted(job.path.split("/")[-2] for job in share.jobs)))
        return share

    monkeypatch.setattr(catalog_parallel.Share, "start", classmethod(starting))
    asked = []

    def busy_once(self):  # the first copy looks busy when team1 is stored, done after
        asked.append(self)
        return len(asked) == 1

    monkeypatch.setattr(catalog_parallel.Share, "running", busy_once)
    _night(src, 0)
    snap = _backup(repo, src)
    assert events[:4] == [("stored", "team0"), ("started", ["team0", "team0"]), ("stored", "team1"),
                          ("started", ["team1", "team1"])]  # before team2 is stored: while it is read
    assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))


def test_folders_without_export_candidates_begin_nothing(small_chunks_repo, tmp_path, monkeypatch):
    """A stored folder holding no file an export is recognised by (.json, .jsonl, .txt, .zip,
    here or below) is not worth a flush."""
    repo, src = small_chunks_repo, tmp_path / "src"
    monkeypatch.setattr(catalog_build, "DEFAULT_READERS", [SegmentedReader()])
    monkeypatch.setattr(catalog_early, "MIN_STORED_BETWEEN", 0)
    flushes = _flushes(monkeypatch)
    for f in range(4):
        (src / f"photos{f}" / "2026").mkdir(parents=True)
        (src / f"photos{f}" / "2026" / "IMG_0001.JPG").write_bytes(os.urandom(30_000))
    write(src / "team" / "chats" / "room.chat.jsonl", night(0))
    snap = _backup(repo, src)
    assert flushes.count(False) == 1  # the folder with the export (below its own folder) only
    assert snap.catalog == _one_process(repo, bytes.fromhex(snap.tree))
