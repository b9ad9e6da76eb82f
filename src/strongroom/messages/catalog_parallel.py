"""Export files read piece by piece (spec §23.6), shared out between this process and a forked one.

Reading a changed export file for the catalogue is Python code (cutting, hashing and looking up
every record, parsing the changed ones) that holds the GIL, and it comes after the backup has
stored its files, when the second core is idle. So a forked child (strongroom.forked) reads
files too: the files that can be read from the source files the backup just stored are taken in
turn by both processes, largest first. This process writes each part as it goes; the child
writes, per file, the part's record chunks, its warnings and its new memo to a scratch file, and
this process then stores those chunks as parts, exactly as it would have. The child does no
repository or cache I/O: the memos it may need are read for it before the fork, and a file whose
source changed (or that the child failed on) is read here afterwards, from the repository, as
without a child. A child that fails altogether has all it took read here. The catalogue is the
same bytes either way (a test compares roots). A ``Share`` may also be started before the
catalogue, while the backup still stores files (catalog_early); the catalogue then counts its
files for its own by key."""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

from strongroom.errors import StrongroomError
from strongroom.forked import Forked, available_cores
from strongroom.messages.catalog_memo import PieceMemo
from strongroom.messages.model import Export

MIN_FORKED_BYTES = 2 * 1024 * 1024  # a smaller share is read here: forking costs milliseconds
MAX_FORKED_MEMO_BYTES = 128 * 1024 * 1024  # sealed memos handed to the child (held over the fork)


class LocalSource(NamedTuple):
    """Where the bytes of an export file may be read without the repository: the source file the
    backup just stored it from, valid while its BLAKE3 is the snapshot's content hash; for a zip
    member, the archive's source file and the member's name in it."""

    path: str
    size: int
    content_hash: bytes
    member: str | None = None


@dataclass
class PieceJob:
    """An export file whose part is read piece by piece."""

    export: Export
    files: object  # the ExportFiles the path belongs to (a snapshot tree, or its zips' members)
    path: str
    reader: object  # its segment reader (spec §22.10), context already taken
    key: bytes  # the part key (spec §23.3)
    memo_key: bytes  # its memo's key (spec §23.6)
    size: int
    local: LocalSource | None


class _Claims:
    """Job numbers handed out in turn to this process and its child: a counter in a scratch file,
    taken under a lock the kernel drops if its holder dies (so neither waits on a dead one)."""

    def __init__(self, folder: str) -> None:
        self._file = tempfile.TemporaryFile(dir=folder)

    def take(self) -> int:
        fd = self._file.fileno()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            n = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little")
            os.pwrite(fd, (n + 1).to_bytes(8, "little"), 0)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        return n

    def close(self) -> None:
        self._file.close()


class Share:
    """Piece jobs (each with a local source) taken in turn, largest first, by this process and a
    forked child that writes what it read to a scratch file."""

    def __init__(self, jobs: list[PieceJob], raw_memos: list[bytes | None], claims: _Claims,
                 child: Forked | None) -> None:
        self.jobs = jobs
        self._raw = raw_memos
        self._claims = claims
        self._child = child
        self._mine: set[int] = set()

    @classmethod
    def start(cls, builder, jobs: list[PieceJob], *, nice: int = 0) -> Share | None:
        """The share of ``jobs`` with a child started on it (``nice``: its lower priority), or
        None when the builder, this machine or the work's size (less than MIN_FORKED_BYTES)
        calls for no child."""
        if not (builder.parallel and available_cores() > 1 and hasattr(os, "fork")):
            return None
        jobs = sorted((j for j in jobs if j.local is not None), key=lambda j: -j.size)
        if sum(j.size for j in jobs) < MIN_FORKED_BYTES:
            return None
        memos = builder.memos
        raw: list[bytes | None] = []
        held = 0
        for job in jobs:  # the sealed memos, read here (the child does no cache I/O)
            if held >= MAX_FORKED_MEMO_BYTES:
                break
            raw.append(memos.raw(job.memo_key) if memos is not None else None)
            held += len(raw[-1] or b"")
        jobs = jobs[:len(raw)]
        folder = builder.repo.scratch_folder()
        claims = _Claims(folder)
        share = cls(jobs, raw, claims, None)
        share._child = Forked.start(lambda out: _child_work(builder, jobs, raw, claims, out),
                                    os.path.join(folder, f"catalogue-share-{os.getpid()}-{id(share):x}"),
                                    nice=nice)
        if share._child is None:
            share.close()
            return None
        return share

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    def take_turns(self, read: Callable[[PieceJob], None]) -> None:
        """Read, here, each job the child has not taken yet (its memo held no longer: this
        process reads it from the cache)."""
        while (n := self._claims.take()) < len(self.jobs):
            self._mine.add(n)
            self._raw[n] = None
            read(self.jobs[n])

    def finish(self, builder, final: Callable[[PieceJob], PieceJob | None]) -> list[PieceJob]:
        """Wait for the child and store, through ``builder``, the parts it read of the jobs
        ``final`` maps to the catalogue's own (the others are dropped); return the catalogue's
        jobs left to read here (the child gave them back, or failed)."""
        if self._child.wait():
            return _take_share(builder, self.jobs, self._child.path, final)
        return [job for n, j in enumerate(self.jobs) if n not in self._mine and (job := final(j)) is not None]

    def close(self) -> None:
        """Stop the child if it still runs; remove its file."""
        self._claims.close()
        if self._child is not None:
            self._child.stop()
            with contextlib.suppress(OSError):
                os.unlink(self._child.path)


def read_piece_jobs(builder, jobs: list[PieceJob], early: Iterable[Share] = ()) -> None:
    """Write the parts of ``jobs`` through ``builder`` (a catalog_build.CatalogBuilder), in two
    processes when it allows it and the work is large enough. Files the child may read (from
    their source) are taken in turn by both, largest first; the others are read here first.

    ``early``: shares started during the backup (catalog_early) on jobs planned from subtrees
    of the snapshot; a job of theirs counts for the one of ``jobs`` with the same part key,
    memo key and path (the part depends on nothing else), any other is dropped."""
    early = list(early)
    by_key = {(j.key, j.memo_key, j.path): j for j in jobs}
    counted: dict[int, PieceJob] = {}  # id of an early job -> the job of ``jobs`` it stands for
    for share in early:
        for job in share.jobs:
            mine = by_key.pop((job.key, job.memo_key, job.path), None)
            if mine is not None:
                counted[id(job)] = mine
    rest = list(by_key.values())

    def counted_for(job: PieceJob) -> PieceJob | None:
        return counted.get(id(job))

    def read(job: PieceJob | None) -> None:
        if job is not None:
            _guarded(builder, job, builder.read_pieces)

    shares = list(early)
    try:
        # an early copy still at work is helped first: its files were found first
        for share in early:
            share.take_turns(lambda job: read(counted_for(job)))
        own = Share.start(builder, rest)
        if own is not None:
            shares.append(own)
        taken = {id(j) for j in own.jobs} if own is not None else set()
        for job in rest:
            if id(job) not in taken:
                read(job)
        if own is not None:
            own.take_turns(read)
        for share in shares:
            for job in share.finish(builder, counted_for if share is not own else lambda job: job):
                read(job)
    finally:
        for share in shares:
            share.close()


def _guarded(builder, job: PieceJob, read: Callable[[PieceJob], None]) -> None:
    """A reader failing on odd input costs that file's part, with a warning, never the backup."""
    try:
        read(job)
    except StrongroomError:
        raise
    except Exception as e:  # noqa: BLE001
        builder.warn(f"cannot catalogue the {job.export.platform} export at /{job.export.root}: {e}")


# -- the child's side and its result file -------------------------------------------------------
# A sequence of marshal values: per job it took, ("part", n), its record chunks (bytes), None,
# then (warnings, pieces parsed, pieces reused, sealed memo or None); or ("again", n) for a job
# to be read by the parent; and last ("end", -1).

def _child_work(builder, jobs: list[PieceJob], raw_memos: list[bytes | None], claims: _Claims,
                out: BinaryIO) -> None:
    memos = builder.memos
    while (n := claims.take()) < len(jobs):
        job, raw = jobs[n], raw_memos[n]
        said: list[str] = []
        try:
            memo = memos.decoded(job.memo_key, raw) if memos is not None else PieceMemo()
            read = builder.piece_chunks(job, memo, said.append, from_repository=False)
        except Exception:  # noqa: BLE001 - the parent reads it again and reports what fails
            read = None
        if read is None:
            marshal.dump(("again", n), out)
            continue
        chunks, memo = read
        marshal.dump(("part", n), out)
        for chunk in chunks:
            marshal.dump(chunk, out)
        marshal.dump(None, out)
        sealed = memos.sealed(job.memo_key, memo) if memos is not None else None
        marshal.dump((said, memo.parsed, memo.reused, sealed), out)
    marshal.dump(("end", -1), out)


def _take_share(builder, jobs: list[PieceJob], path: str, final: Callable[[PieceJob], PieceJob | None]
                ) -> list[PieceJob]:
    """Store the parts the child wrote to ``path`` of the jobs ``final`` maps to the
    catalogue's; the catalogue's jobs left for this process to read."""
    with open(path, "rb") as f:
        load = marshal.load
        entries = []
        while True:
            tag, n = load(f)
            if tag == "end":
                break
            job = final(jobs[n])
            if tag == "again":
                if job is not None:
                    entries.append((job, None))
                continue
            chunks: Iterator[bytes] = iter(lambda: load(f), None)
            if job is None:
                for _ in chunks:
                    pass  # (not this catalogue's)
                load(f)
                continue
            builder.write_part(job.export, job.path, job.key, chunks)
            said, parsed, reused, sealed = load(f)
            entries.append((job, (said, parsed, reused, sealed)))
    again = []
    for job, done in entries:
        if done is None:
            again.append(job)
            continue
        said, parsed, reused, sealed = done
        for message in said:
            builder.warn(message)
        builder.stats.pieces_parsed += parsed
        builder.stats.pieces_reused += reused
        builder.stats.sources_read += 1
        builder.stats.files_read += 1
        if sealed is not None:
            builder.memos.remember_sealed(job.memo_key, sealed)
    return again
