"""Reading packs end to end: the deep level of `check` (``--read-data``) and the salvage step of
`repair packs`.

Every byte of a pack goes through BLAKE3 to compare with the pack's name, and every blob is
authenticated, decrypted, decompressed and re-hashed. The blob list comes from the pack's own
header; the index's record of the pack is cross-checked against it and used instead when the
header itself is unreadable, so blobs of a pack with a damaged header can still be tested (and
salvaged).

Two ways to read, with the same findings:

- ``verify_packs`` (check): each pack of up to ``WHOLE_PACK_LIMIT`` bytes is read with one load
  and its blobs are verified in batches by worker threads while the next packs are being read;
  at most ``IN_FLIGHT_BYTES`` of pack bytes are held at once. With a local repository and two
  cores, a forked copy of the process verifies part of the packs the same way (threads alone
  keep one core busy: the Python between the GIL-free calls holds the GIL). Anything unusual (a
  larger pack, a pack whose length differs from the listing) goes the second way.
- ``read_pack`` (repair, and the fallback above): sequential, in bounded segments, never the
  whole pack in memory, handing every blob that verified to a callback.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import random
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import blake3

from strongroom.crypto.aead import Cipher
from strongroom.dictionary import CACHE_SIZE
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError, UnsupportedFormat, UsageError
from strongroom.forked import Forked
from strongroom.pack import BlobEntry, GroupMemo, decode_entry, pack_cipher, pack_path, parse_header, tail_size_hint
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

SEGMENT = 4 * 1024 * 1024  # bytes read per storage call


@dataclass
class PackReport:
    """What reading one pack found."""

    name: str
    size: int = 0  # bytes read
    problems: list[str] = field(default_factory=list)  # pack-level damage (name, header, index mismatch)
    bad_blobs: list[tuple[bytes, str]] = field(default_factory=list)  # (blob id, why)
    blobs_ok: int = 0
    missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.bad_blobs and not self.missing


def read_header(repo: Repository, name: str, size: int) -> tuple[bytes, list[BlobEntry]]:
    """The pack's envelope and header entries, from its last bytes (not the whole pack)."""
    path = pack_path(name)
    want = min(size, tail_size_hint())
    tail = repo.storage.load(path, size - want, want)
    try:
        return parse_header(repo.master, tail, size, path)
    except ValueError:  # the header is larger than the hint: read exactly what it needs
        from strongroom.pack import TRAILER
        env_len, header_len, _, _ = TRAILER.unpack(tail[-TRAILER.size:])
        need = TRAILER.size + env_len + header_len
        return parse_header(repo.master, repo.storage.load(path, size - need, need), size, path)


def read_pack(repo: Repository, name: str, size: int, *,
              on_blob: Callable[[BlobEntry, bytes, bytes], None] | None = None,
              on_bytes: Callable[[int], None] = lambda n: None) -> PackReport:
    """Read and verify one stored pack of ``size`` bytes, segment by segment. ``on_blob(entry,
    payload, plaintext)`` receives every blob that verified (repair uses it to salvage them)."""
    path = pack_path(name)
    report = PackReport(name)
    try:
        entries, cipher = _header(repo, name, size, report, lambda: read_header(repo, name, size))
    except ObjectNotFound:
        report.missing = True
        return report
    hasher = blake3.blake3()
    memo = GroupMemo()
    pending = iter(sorted(entries, key=lambda e: (e.offset, e.member_offset)))
    entry = next(pending, None)
    buf = bytearray()
    base = 0  # pack offset of buf[0]
    pos = 0
    while pos < size:
        chunk = repo.storage.load(path, pos, min(SEGMENT, size - pos))
        if not chunk:
            report.problems.append(f"short read at offset {pos} of {size}")
            break
        hasher.update(chunk)
        pos += len(chunk)
        on_bytes(len(chunk))
        buf += chunk
        while entry is not None and entry.offset + entry.length <= pos:
            if entry.offset >= base:
                sealed = memoryview(buf)[entry.offset - base: entry.offset - base + entry.length]
                _check_blob(repo, cipher, name, entry, sealed, report, on_blob, memo)
                del sealed
            else:  # only a lying index record can overlap (a parsed header is contiguous)
                report.bad_blobs.append((entry.id, "overlaps the previous blob"))
            entry = next(pending, None)
        # keep only bytes a later blob still needs
        keep_from = min(entry.offset, pos) if entry is not None else pos
        if keep_from > base:
            del buf[:keep_from - base]
            base = keep_from
    report.size = pos
    while entry is not None:  # entries beyond what could be read
        report.bad_blobs.append((entry.id, "beyond the end of the pack"))
        entry = next(pending, None)
    if pos == size and hasher.hexdigest() != name:
        report.problems.append("content does not match its name")
    return report


def _header(repo: Repository, name: str, size: int, report: PackReport,
            parse: Callable[[], tuple[bytes, list[BlobEntry]]]) -> tuple[list[BlobEntry], Cipher | None]:
    """The pack's blob entries and key, from its header (``parse``) checked against the index, or
    from the index when the header is unreadable; problems found go to ``report``."""
    indexed = repo.index.pack_entries(name)
    envelope = None
    entries: list[BlobEntry] = []
    try:
        envelope, entries = parse()
    except (IntegrityError, UnsupportedFormat) as e:
        report.problems.append(f"header unreadable: {e}")
        info = repo.index.pack_info(name)
        if info is not None:  # fall back to what the index says the pack holds
            envelope, entries = info[1], indexed
    if envelope is not None and indexed and entries != indexed:  # BlobEntry compares all its fields
        report.problems.append("header does not match the index's record of this pack")
    info = repo.index.pack_info(name)
    if info is not None and info[0] != size:
        report.problems.append(f"size {size}, the index records {info[0]}")
    cipher = None
    if envelope is not None:
        try:
            cipher = pack_cipher(repo.master, envelope, pack_path(name))
        except StrongroomError as e:
            report.problems.append(str(e))
    return entries, cipher


def _verify_blob(repo: Repository, cipher: Cipher, entry: BlobEntry, sealed, what: str,
                 memo: GroupMemo | None = None) -> tuple[bytes, bytes]:
    """(payload, plaintext) of one blob that authenticates, decompresses and matches its id;
    IntegrityError naming ``what`` otherwise. A group member's payload is its group's; with
    ``memo`` a group is decrypted and decompressed once for all its members."""
    return decode_entry(cipher, entry, sealed, what, repo.dictionaries.get, repo.master.blob_id, memo)


def _check_blob(repo: Repository, cipher, pack: str, entry: BlobEntry, sealed, report: PackReport,
                on_blob, memo: GroupMemo | None = None) -> None:
    if cipher is None:
        report.bad_blobs.append((entry.id, "no usable pack key"))
        return
    try:
        payload, data = _verify_blob(repo, cipher, entry, sealed, f"blob {entry.id.hex()[:16]}", memo)
    except IntegrityError as e:
        report.bad_blobs.append((entry.id, str(e)))
        return
    report.blobs_ok += 1
    if on_blob is not None:
        on_blob(entry, payload, data)


# -- check: whole packs, blobs verified in parallel batches ---------------------------------------

WHOLE_PACK_LIMIT = 64 * 1024 * 1024  # larger packs (a non-default pack_size) are read in segments
BATCH_BYTES = 1024 * 1024  # sealed bytes of blobs verified per worker task
IN_FLIGHT_BYTES = 40 * 1024 * 1024  # pack bytes read and not yet verified (one pack always may be)


def verify_packs(repo: Repository, packs: Iterable[tuple[str, int]], *, threads: int = 2,
                 on_bytes: Callable[[int], None] = lambda n: None, processes: int = 1) -> Iterator[PackReport]:
    """Read and verify packs given as (name, listed size); yield one report per pack, in order.

    A storage error is reported against its pack (as a problem) and the next pack is read. With
    ``processes`` 2 and a local repository, a forked copy of this process verifies part of them
    (``_verify_round``)."""
    if processes < 2 or type(repo.storage) is not LocalStorage or not hasattr(os, "fork"):
        yield from _verify_in_threads(repo, packs, threads, on_bytes)
        return
    group: list[tuple[str, int]] = []
    held = 0
    for name, size in packs:
        group.append((name, size))
        held += size
        if held >= ROUND_BYTES:
            yield from _verify_round(repo, group, threads, on_bytes)
            group, held = [], 0
    if group:
        yield from _verify_round(repo, group, threads, on_bytes)


def _verify_in_threads(repo: Repository, packs: Iterable[tuple[str, int]], threads: int,
                       on_bytes: Callable[[int], None]) -> Iterator[PackReport]:
    pool = ThreadPoolExecutor(threads, thread_name_prefix="check")
    pending: deque[tuple[int, str, Future]] = deque()  # (bytes held, pack, its loading)
    held = 0
    try:
        for name, size in packs:
            cost = min(size, WHOLE_PACK_LIMIT)
            while pending and held + cost > IN_FLIGHT_BYTES:
                held -= pending[0][0]
                yield _finish(*pending.popleft()[1:])
            pending.append((cost, name, pool.submit(_load_pack, repo, pool, name, size, on_bytes)))
            held += cost
        while pending:
            held -= pending[0][0]
            yield _finish(*pending.popleft()[1:])
    finally:
        for *_, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _load_pack(repo: Repository, pool: ThreadPoolExecutor, name: str, size: int,
               on_bytes: Callable[[int], None]) -> tuple[PackReport, list[Future], list[tuple[bytes, str]]]:
    """Read a pack whole, check its name, header and index record, and hand its blobs to the
    pool in batches; returns (report so far, the batches' futures, blobs beyond its end)."""
    if size > WHOLE_PACK_LIMIT:
        return read_pack(repo, name, size, on_bytes=on_bytes), [], []
    path = pack_path(name)
    data = repo.storage.load(path)
    if len(data) != size:  # changed since it was listed: the segment reader says exactly how
        del data
        return read_pack(repo, name, size, on_bytes=on_bytes), [], []
    on_bytes(size)
    report = PackReport(name, size=size)
    entries, cipher = _header(repo, name, size, report, lambda: parse_header(repo.master, data, size, path))
    if blake3.blake3(data).hexdigest() != name:
        report.problems.append("content does not match its name")
    view = memoryview(data)
    beyond = []
    batches = []
    batch: list[BlobEntry] = []
    batch_bytes = 0
    for entry in sorted(entries, key=lambda e: (e.offset, e.member_offset)):
        if entry.offset + entry.length > size:  # only a lying index record reaches past the end
            beyond.append((entry.id, "beyond the end of the pack"))
            continue
        if batch and batch_bytes >= BATCH_BYTES and entry.offset != batch[-1].offset:
            # full, and not in the middle of a group (its members are decoded together)
            batches.append(pool.submit(_verify_batch, repo, cipher, batch, view))
            batch, batch_bytes = [], 0
        if not batch or entry.offset != batch[-1].offset:
            batch_bytes += entry.length
        batch.append(entry)
    if batch:
        batches.append(pool.submit(_verify_batch, repo, cipher, batch, view))
    return report, batches, beyond


def _verify_batch(repo: Repository, cipher: Cipher | None, batch: list[BlobEntry],
                  view: memoryview) -> tuple[int, list[tuple[bytes, str]]]:
    """(blobs verified, [(blob id, why)] of the others)."""
    if cipher is None:
        return 0, [(e.id, "no usable pack key") for e in batch]
    ok = 0
    bad = []
    memo = GroupMemo()
    for entry in batch:
        sealed = view[entry.offset:entry.offset + entry.length]
        try:
            _verify_blob(repo, cipher, entry, sealed, "", memo)  # no message to format unless it fails
            ok += 1
        except IntegrityError:
            try:  # again, to say which blob and why
                _verify_blob(repo, cipher, entry, sealed, f"blob {entry.id.hex()[:16]}")
                ok += 1
            except IntegrityError as e:
                bad.append((entry.id, str(e)))
    return ok, bad


# -- check: part of the packs verified by a forked copy -----------------------------------------
# Verifying a blob is a few calls into C that release the GIL (AES-GCM, zstd, BLAKE3) between
# lines of Python that hold it, so two threads of one process cannot keep two cores busy. A forked
# copy verifies part of each round of packs, largest first to the less loaded side, with its own
# threads, and writes its reports to a scratch file. It reads only the local storage's files (no
# shared connection, no lock) and what was resolved for it before the fork: the index's records of
# its packs and the compression dictionaries those name (at most a reader's eight; more, and the
# round is verified here). If it fails, or meets a dictionary that was not resolved for it (a
# header that names one its index record does not), its packs are verified here: the reports are
# the same either way, in the packs' order.

FORK_MIN_BYTES = 64 * 1024 * 1024  # a smaller round is verified here alone
ROUND_BYTES = 512 * 1024 * 1024  # packs shared out at a time (the index records of the child's share are held)


def _verify_round(repo: Repository, group: list[tuple[str, int]], threads: int,
                  on_bytes: Callable[[int], None]) -> Iterator[PackReport]:
    theirs: list[int] = []
    if sum(size for _, size in group) >= FORK_MIN_BYTES:
        mine_bytes = their_bytes = 0
        for n in sorted(range(len(group)), key=lambda n: -group[n][1]):
            if their_bytes < mine_bytes:
                theirs.append(n)
                their_bytes += group[n][1]
            else:
                mine_bytes += group[n][1]
        theirs.sort()
    child = None
    if theirs:
        try:
            view = _Resolved(repo, [group[n][0] for n in theirs])
        except (StrongroomError, _Unresolved):  # (e.g. a storage error: each pack says so, here)
            view = None
        if view is not None:
            child = Forked.start(lambda out: _child_verify(view, [group[n] for n in theirs], threads, out),
                                 os.path.join(repo.scratch_folder(), f"check-share-{os.getpid()}"))
    if child is None:
        theirs = []
    reports: dict[int, PackReport] = {}
    try:
        taken_by_child = set(theirs)
        mine = [n for n in range(len(group)) if n not in taken_by_child]
        reports.update(zip(mine, _verify_in_threads(repo, [group[n] for n in mine], threads, on_bytes)))
        if child is not None:
            if child.wait():
                with open(child.path, "rb") as f:
                    taken = [PackReport(*fields) for fields in marshal.load(f)]
                for report in taken:
                    on_bytes(report.size)
            else:  # verified here, as if there had been no child
                taken = list(_verify_in_threads(repo, [group[n] for n in theirs], threads, on_bytes))
            reports.update(zip(theirs, taken))
    finally:
        if child is not None:
            child.stop()
            with contextlib.suppress(OSError):
                os.unlink(child.path)
    for n in range(len(group)):
        yield reports[n]


def _child_verify(view: _Resolved, packs: list[tuple[str, int]], threads: int, out) -> None:
    reports = _verify_in_threads(view, packs, threads, lambda n: None)  # type: ignore[arg-type]
    marshal.dump([(r.name, r.size, r.problems, r.bad_blobs, r.blobs_ok, r.missing) for r in reports], out)


class _Resolved:
    """What verifying packs reads of a repository, resolved before a fork: the index's records of
    the given packs, the compression dictionaries their blobs name, the key and the (local,
    stateless) storage."""

    def __init__(self, repo: Repository, names: list[str]) -> None:
        self.master = repo.master
        self.storage = repo.storage
        entries = {name: repo.index.pack_entries(name) for name in names}
        self.index = _ResolvedIndex(entries, {name: repo.index.pack_info(name) for name in names})
        named = {e.dictionary for found in entries.values() for e in found if e.dictionary}
        if len(named) > CACHE_SIZE:
            raise _Unresolved("more dictionaries than a reader may hold")
        self.dictionaries = _ResolvedDictionaries(repo.dictionaries, named)


class _Unresolved(Exception):
    """The forked copy needs what was not resolved for it: it fails, and its packs are verified
    by the main process."""


class _ResolvedIndex:
    def __init__(self, entries: dict, infos: dict) -> None:
        self._entries, self._infos = entries, infos

    def pack_entries(self, name: str) -> list[BlobEntry]:
        return self._entries[name]

    def pack_info(self, name: str):
        return self._infos[name]


class _ResolvedDictionaries:
    """The given dictionaries, or why each cannot be used (as Dictionaries.get says)."""

    def __init__(self, dictionaries, ids: set[int]) -> None:
        self._found: dict[int, object] = {}
        self._failed: dict[int, str] = {}
        for dict_id in ids:
            try:
                self._found[dict_id] = dictionaries.get(dict_id)
            except IntegrityError as e:
                self._failed[dict_id] = str(e)

    def get(self, dict_id: int):
        if dict_id in self._found:
            return self._found[dict_id]
        if dict_id in self._failed:
            raise IntegrityError(self._failed[dict_id])
        raise _Unresolved(f"dictionary {dict_id:08x} was not resolved")  # named by a header, not the index


def _finish(name: str, loading: Future) -> PackReport:
    try:
        report, batches, beyond = loading.result()
        for batch in batches:
            ok, bad = batch.result()
            report.blobs_ok += ok
            report.bad_blobs += bad
    except ObjectNotFound:
        return PackReport(name, missing=True)
    except StrongroomError as e:  # e.g. a storage error: report it against this pack, go on
        return PackReport(name, problems=[f"cannot be read: {e}"])
    report.bad_blobs += beyond
    return report


# -- choosing a subset ----------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Subset:
    """Which packs to read: all, part n of t (by pack name), a random fraction, or random packs
    up to a byte budget."""

    kind: str = "all"  # all | part | percent | bytes
    n: int = 0
    t: int = 0
    value: float = 0.0

    @classmethod
    def parse(cls, spec: str | None) -> Subset:
        if spec is None:
            return cls()
        text = spec.strip()
        if "/" in text:
            try:
                n, t = (int(x) for x in text.split("/"))
            except ValueError:
                raise UsageError(f"invalid subset {spec!r}: use n/t, e.g. 2/7") from None
            if not 1 <= n <= t:
                raise UsageError(f"invalid subset {spec!r}: need 1 <= n <= t")
            return cls("part", n=n, t=t)
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                raise UsageError(f"invalid subset {spec!r}: use a percentage such as 10%") from None
            if not 0 < pct <= 100:
                raise UsageError(f"invalid subset {spec!r}: the percentage must be in (0, 100]")
            return cls("percent", value=pct)
        m = _SIZE.match(text)
        if not m or float(m.group(1)) <= 0:
            raise UsageError(f"invalid subset {spec!r}: use N%, n/t or a size such as 500M")
        return cls("bytes", value=float(m.group(1)) * _UNITS[m.group(2).upper()])

    def select(self, packs: dict[str, int]) -> Iterator[str]:
        """Pick pack names from ``name -> size``. Parts are fixed by the name, so the parts 1/t ..
        t/t together cover every pack exactly once; the other kinds pick at random."""
        if self.kind == "all":
            yield from sorted(packs)
        elif self.kind == "part":
            yield from sorted(p for p in packs if int(p[:16], 16) % self.t == self.n - 1)
        else:
            names = list(packs)
            random.SystemRandom().shuffle(names)
            if self.kind == "percent":
                count = max(1, round(len(names) * self.value / 100)) if names else 0
                yield from sorted(names[:count])
            else:
                total = 0
                chosen = []
                for p in names:
                    if total >= self.value:
                        break
                    chosen.append(p)
                    total += packs[p]
                yield from sorted(chosen)
