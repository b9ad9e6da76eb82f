"""The restore drill: restore a random sample of a snapshot into a scratch directory, prove every
restored byte against the snapshot, and estimate how long restoring all of it would take (RTO).

Two walks over the snapshot's trees, with memory independent of the snapshot's size:

1. The *census* walk loads every tree (timed: a full restore walks them too), counts files and
   bytes, and files each regular file (or archive) into one of ``BUCKETS`` buckets by a keyed hash of
   (seed, path), summing bytes per bucket. The lowest buckets whose bytes reach the target form
   the sample: whole files, chosen at random but reproducibly for one seed, at least the target
   share of bytes (over by at most one bucket), known exactly before anything is restored.
2. The *restore* walk writes the sampled files with the restore building blocks (BlobFetcher,
   RestoreTarget; timed: the throughput), then checks each one independently of that path: it
   re-reads the file from disk and compares every chunk with the snapshot's chunk ids under the
   keyed hash (commands/verify.py), then the size, permission bits and modification time.

RTO estimate = census walk time + bytes_total / measured restore throughput. Verification time
is reported but not part of the estimate (a real restore need not verify).

The scratch directory is removed in every case (success, failure, exception, interrupt). A
completed drill, passed or failed, is recorded in the audit log."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from strongroom.commands import Progress, ProgressCallback, ignore_progress
from strongroom.commands.ls import walk
from strongroom.archives.rebuild import rebuild
from strongroom.commands.verify import verify_archive, verify_file
from strongroom.errors import StrongroomError, UsageError
from strongroom.fetcher import BlobFetcher
from strongroom.repository import Repository
from strongroom.restore_target import RestoreTarget
from strongroom.snapshot import Snapshot
from strongroom.tree import ARCHIVE, FILE, Node

#: What a drill restores: regular files, and archives stored member-wise, rebuilt as restore
#: rebuilds them (their members are not drilled apart: the rebuild reads every one of them).
_DRILLED = (FILE, ARCHIVE)

BUCKETS = 4096
DEFAULT_SHARE = 0.10
#: With the default sample, at least this many bytes are restored (so small snapshots restore fully).
DEFAULT_FLOOR_BYTES = 64 * 1024 * 1024
MAX_LISTED_FAILURES = 100


@dataclass(frozen=True)
class Sample:
    """What share of a snapshot's bytes to restore: ``share`` in (0, 1]; ``floor_bytes`` raises
    the target for small snapshots (the default sample only)."""

    share: float = DEFAULT_SHARE
    floor_bytes: int = DEFAULT_FLOOR_BYTES
    spec: str = "default"

    @classmethod
    def parse(cls, text: str | None, *, everything: bool = False) -> Sample:
        if everything:
            if text is not None:
                raise UsageError("use either --sample or --all")
            return cls(1.0, 0, "all")
        if text is None:
            return cls()
        number = text.strip().removesuffix("%")
        try:
            percent = float(number)
        except ValueError:
            raise UsageError(f"invalid --sample {text!r}: use a percentage such as 10%") from None
        if not 0 < percent <= 100:
            raise UsageError(f"invalid --sample {text!r}: the percentage must be above 0 and at most 100")
        return cls(percent / 100, 0, f"{percent:g}%")

    def target(self, total_bytes: int) -> int:
        return min(total_bytes, max(int(total_bytes * self.share + 0.5), self.floor_bytes))


@dataclass
class DrillFailure:
    path: str
    stage: str  # "restore" (could not be restored) or "verify" (restored, but differs)
    error: str

    def to_json(self) -> dict:
        return {"path": self.path, "stage": self.stage, "error": self.error}


@dataclass
class DrillResult:
    snapshot: Snapshot
    sample: Sample
    seed: int
    started: str = ""
    files_total: int = 0
    bytes_total: int = 0
    files_sampled: int = 0
    bytes_sampled: int = 0
    files_restored: int = 0
    bytes_restored: int = 0
    files_verified: int = 0
    failures: list[DrillFailure] = field(default_factory=list)
    failures_not_listed: int = 0
    tree_walk_seconds: float = 0.0
    restore_seconds: float = 0.0
    verify_seconds: float = 0.0
    scratch_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.failures_not_listed

    @property
    def failed_files(self) -> int:
        return len(self.failures) + self.failures_not_listed

    @property
    def throughput(self) -> float:
        """Restored bytes per second of restore work (0 when nothing was timed)."""
        return self.bytes_restored / self.restore_seconds if self.restore_seconds > 0 else 0.0

    @property
    def estimated_restore_seconds(self) -> float | None:
        """Tree walk + the whole snapshot at the measured rate: by bytes, or by files when the
        sample held only empty files. None when nothing could be measured."""
        if self.bytes_restored and self.restore_seconds > 0:
            return self.tree_walk_seconds + self.bytes_total / self.throughput
        if self.files_restored:
            return self.tree_walk_seconds + self.restore_seconds * self.files_total / self.files_restored
        if self.files_total == 0:
            return self.tree_walk_seconds
        return None

    @property
    def estimate_method(self) -> str:
        if self.bytes_restored and self.restore_seconds > 0:
            return "tree_walk_seconds + bytes_total / bytes_per_second"
        if self.files_restored:
            return "tree_walk_seconds + restore_seconds * files_total / files_restored"
        return "tree_walk_seconds" if self.files_total == 0 else "none: nothing could be restored"

    def to_json(self) -> dict:
        estimate = self.estimated_restore_seconds
        return {
            "ok": self.ok,
            "snapshot": self.snapshot.id,
            "started": self.started,
            "sample": self.sample.spec,
            "seed": self.seed,
            "files_total": self.files_total,
            "bytes_total": self.bytes_total,
            "files_sampled": self.files_sampled,
            "bytes_sampled": self.bytes_sampled,
            "files_restored": self.files_restored,
            "bytes_restored": self.bytes_restored,
            "files_verified": self.files_verified,
            "failures": [f.to_json() for f in self.failures],
            "failures_not_listed": self.failures_not_listed,
            "tree_walk_seconds": round(self.tree_walk_seconds, 6),
            "restore_seconds": round(self.restore_seconds, 6),
            "verify_seconds": round(self.verify_seconds, 6),
            "bytes_per_second": round(self.throughput),
            "estimated_restore_seconds": None if estimate is None else round(estimate, 3),
            "estimate_method": self.estimate_method,
        }


def _bucket(seed: bytes, path: bytes) -> int:
    digest = hashlib.blake2b(path, key=seed, digest_size=8).digest()
    return int.from_bytes(digest, "big") * BUCKETS >> 64


def _seed_key(seed: int) -> bytes:
    return seed.to_bytes(16, "big", signed=False)


class _Census:
    """Counts of the whole snapshot and bytes per bucket, from one walk over its trees."""

    def __init__(self, repo: Repository, tree: bytes, seed: bytes) -> None:
        self.files = self.bytes = 0
        self.bucket_bytes = [0] * BUCKETS
        self.bucket_files = [0] * BUCKETS
        start = time.monotonic()
        for entry in walk(repo, tree, into_archives=False):
            if entry.node.type in _DRILLED:
                b = _bucket(seed, entry.path)
                self.files += 1
                self.bytes += entry.node.size
                self.bucket_files[b] += 1
                self.bucket_bytes[b] += entry.node.size
        self.seconds = time.monotonic() - start

    def cutoff(self, target: int) -> tuple[int, int, int]:
        """The first bucket past the sample, and the sample's files and bytes: the lowest buckets
        holding at least ``target`` bytes and at least one file; everything when the target is
        the whole snapshot (empty files included)."""
        if target >= self.bytes:
            return BUCKETS, self.files, self.bytes
        files = size = 0
        for b in range(BUCKETS):
            if size >= target and files:
                return b, files, size
            files += self.bucket_files[b]
            size += self.bucket_bytes[b]
        return BUCKETS, files, size


def run_drill(repo: Repository, snapshot: Snapshot, *, sample: Sample = Sample(), seed: int | None = None,
              tmp_dir: str | None = None, progress: ProgressCallback = ignore_progress) -> DrillResult:
    """Restore a sample of ``snapshot`` under a new directory in ``tmp_dir`` (default: the system
    temporary directory), verify it, remove it, and return the measurements. A file that cannot be
    restored or differs from the snapshot is a failure in the result, not an exception."""
    repo.require_full_key("restore (run a drill)")
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "big")
    if not 0 <= seed < 1 << 128:
        raise UsageError(f"invalid --seed {seed}: use a number from 0 to 2**128-1")
    if tmp_dir is not None and not os.path.isdir(tmp_dir):
        raise UsageError(f"--tmp-dir {tmp_dir}: not a directory")
    result = DrillResult(snapshot, sample, seed, started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    tree = bytes.fromhex(snapshot.tree)
    key = _seed_key(seed)
    with repo.lock(exclusive=False):
        repo.sync_index()
        census = _Census(repo, tree, key)
        result.files_total, result.bytes_total, result.tree_walk_seconds = census.files, census.bytes, census.seconds
        cutoff, result.files_sampled, result.bytes_sampled = census.cutoff(sample.target(census.bytes))
        scratch = tempfile.mkdtemp(prefix="strongroom-drill-", dir=tmp_dir)
        result.scratch_dir = scratch
        try:
            with RestoreTarget(scratch) as target, BlobFetcher(repo) as fetcher:
                _restore_sample(repo, tree, key, cutoff, target, fetcher, result, progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        repo.audit("drill", _audit_args(result), result="ok" if result.ok else
                   f"{result.failed_files} file(s) failed, first {result.failures[0].path}: {result.failures[0].error}")
    return result


def _audit_args(result: DrillResult) -> dict:
    doc = result.to_json()
    keep = ("snapshot", "sample", "seed", "files_total", "bytes_total", "files_sampled", "bytes_sampled",
            "files_verified", "bytes_per_second", "estimated_restore_seconds")
    return {k: doc[k] for k in keep}


def _restore_sample(repo: Repository, tree: bytes, seed: bytes, cutoff: int, target: RestoreTarget,
                    fetcher: BlobFetcher, result: DrillResult, progress: ProgressCallback) -> None:
    done = 0
    for entry in walk(repo, tree, into_archives=False):
        node = entry.node
        if node.type not in _DRILLED or _bucket(seed, entry.path) >= cutoff:
            continue
        done += 1
        name = os.fsdecode(entry.path)
        try:
            _drill_file(repo, entry.path.split(b"/")[1:], node, target, fetcher, result)
        except (StrongroomError, OSError) as e:
            _fail(result, name, e)
        progress(Progress(files=done, bytes=result.bytes_restored, current=name, total_bytes=result.bytes_sampled))


class RestoreFailed(StrongroomError):
    """A sampled file could not be restored."""


class DrillMismatch(StrongroomError):
    """A restored file differs from the snapshot (content, size or metadata)."""


def _drill_file(repo: Repository, parts: list[bytes], node: Node, target: RestoreTarget, fetcher: BlobFetcher,
                result: DrillResult) -> None:
    """Restore one file as a restore does (content, then metadata) and check it in between:
    content before the mode is applied, so a mode without read permission cannot hide it."""
    path = os.path.join(target.root, *parts)
    started = time.monotonic()
    try:
        target.make_dir(parts[:-1])
        if node.type == ARCHIVE:
            content = rebuild(repo, fetcher, node.archive, os.fsdecode(b"/" + b"/".join(parts)))
        else:
            content = fetcher.fetch_all(repo.file_chunks(node))
        written = target.write_file(parts, content, size_hint=node.size)
    except (StrongroomError, OSError) as e:
        raise RestoreFailed(str(e)) from e
    finally:
        result.restore_seconds += time.monotonic() - started
    result.files_restored += 1
    result.bytes_restored += written

    started = time.monotonic()
    try:
        if node.type == ARCHIVE:
            # an identical archive is re-read and checked against the SHA-256 taken at backup; an
            # equivalent one was checked on its tar stream while it was rebuilt, and its size may differ
            verify_archive(path, node.archive)
            size = os.stat(path).st_size if node.archive.fidelity == "identical" else node.size
        else:
            size = verify_file(repo, path, node)
    except StrongroomError as e:
        raise DrillMismatch(str(e)) from e
    finally:
        result.verify_seconds += time.monotonic() - started
    if size != node.size:
        raise DrillMismatch(f"verify: restored {size} bytes, the snapshot records {node.size}")

    started = time.monotonic()
    try:
        target.set_metadata(parts, mode=node.mode, mtime_ns=node.mtime_ns, uid=node.uid, gid=node.gid)
    except OSError as e:
        raise RestoreFailed(str(e)) from e
    finally:
        result.restore_seconds += time.monotonic() - started
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise DrillMismatch("verify: not restored as a regular file")
    if stat.S_IMODE(st.st_mode) != stat.S_IMODE(node.mode):
        raise DrillMismatch(f"verify: mode {stat.S_IMODE(st.st_mode):o}, the snapshot records "
                            f"{stat.S_IMODE(node.mode):o}")
    if st.st_mtime_ns != node.mtime_ns:
        raise DrillMismatch(f"verify: modification time {st.st_mtime_ns} ns, the snapshot records "
                            f"{node.mtime_ns} ns")
    result.files_verified += 1


def _fail(result: DrillResult, path: str, error: Exception) -> None:
    stage = "verify" if isinstance(error, DrillMismatch) else "restore"
    if len(result.failures) < MAX_LISTED_FAILURES:
        result.failures.append(DrillFailure(path, stage, str(error)))
    else:
        result.failures_not_listed += 1
