"""The tamper-evident snapshot chain, and receipts.

Every snapshot written since §16 is a signed boxed object whose cleartext header links it into
its group (same host and paths): (group tag, sequence number, id of the previous snapshot). The
group tag is a keyed hash, so the storage holder cannot tell which host or paths a group is;
write-only keys hold the key and can find their group's head without decrypting anything.

``verify_chain`` (needs a full key) finds: altered snapshots (hash or signature), forged ones (a
key the repository never certified), moved or re-ordered ones (group, sequence or time
inconsistent with the previous link), inserted ones (no log entry records adding them), and
removed ones (a link to a missing snapshot, or a snapshot the audit log recorded as added that
is gone) unless the log records the removal.

A receipt is a prefix of the audit log's head entry hash. ``verify_receipt`` proves that entry
and all its predecessors are still present and intact, and that every snapshot they recorded
as added is still there or was removed by a recorded operation.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import blake3

from strongroom.audit import LogReport, read_log
from strongroom.crypto import boxed
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError, UsageError

if TYPE_CHECKING:
    from strongroom.repository import Repository
    from strongroom.snapshot import Snapshot

_LINK = struct.Struct("<32s Q 32s")  # group tag, sequence number, previous snapshot id (zeros: none)
RECEIPT_LENGTH = 24  # hex digits (96 bits)
MIN_RECEIPT_LENGTH = 16


@dataclass(frozen=True)
class ChainLink:
    group: bytes
    seq: int
    previous: str | None

    def encode(self) -> bytes:
        return _LINK.pack(self.group, self.seq, bytes.fromhex(self.previous) if self.previous else bytes(32))

    @classmethod
    def decode(cls, header: bytes, what: str) -> ChainLink:
        if len(header) != _LINK.size:
            raise IntegrityError(f"{what}: malformed chain header")
        group, seq, previous = _LINK.unpack(header)
        return cls(group, seq, previous.hex() if previous != bytes(32) else None)


@dataclass(frozen=True)
class Head:
    snapshot_id: str
    seq: int


def group_tag(key, hostname: str, paths: list[str]) -> bytes:
    """Keyed with the chunk-id key, which full and write-only keys both hold."""
    text = json.dumps([hostname, sorted(paths)], ensure_ascii=True, separators=(",", ":")).encode()
    return blake3.blake3(b"strongroom snapshot group\0" + text, key=key.id_key).digest()


def _links(repo: Repository) -> dict[str, ChainLink]:
    """The chain link of every boxed snapshot, read from headers only (no key needed)."""
    links = {}
    for snapshot_id in repo.snapshot_ids():
        try:
            data = repo.storage.load(f"snapshots/{snapshot_id}")
            if data[:4] == boxed.MAGIC_SNAPSHOT:
                links[snapshot_id] = ChainLink.decode(boxed.boxed_header(data, boxed.MAGIC_SNAPSHOT, snapshot_id),
                                                      snapshot_id)
        except (ObjectNotFound, StrongroomError):
            continue  # gone or damaged: `check --chain` reports it; a new snapshot must not fail on it
    return links


def group_head(repo: Repository, group: bytes) -> Head | None:
    """The snapshot a new snapshot of ``group`` links to: highest sequence number, then lowest id."""
    members = [(link.seq, sid) for sid, link in _links(repo).items() if link.group == group]
    if not members:
        return None
    top = max(seq for seq, _ in members)
    return Head(min(sid for seq, sid in members if seq == top), top)


@dataclass
class ChainReport:
    snapshots: int = 0
    chained: int = 0
    unchained: int = 0  # written before chains existed
    groups: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(repo: Repository, log: LogReport | None = None) -> ChainReport:
    repo.require_full_key("verify the snapshot chain")
    log = log if log is not None else read_log(repo)
    removed = log.removed_objects()
    report = ChainReport()
    snaps: dict[str, Snapshot] = {}
    for snapshot_id in sorted(repo.snapshot_ids()):
        report.snapshots += 1
        try:
            snap = repo.load_snapshot(snapshot_id)
        except StrongroomError as e:
            report.problems.append(f"snapshot {snapshot_id[:16]}: {str(e).removeprefix(f'snapshots/{snapshot_id}: ')}")
            continue
        if snap.chain is None:
            report.unchained += 1
            continue
        report.chained += 1
        snaps[snapshot_id] = snap
        if group_tag(repo.master, snap.hostname, snap.paths) != snap.chain.group:
            report.problems.append(f"snapshot {snapshot_id[:16]}: group tag does not match its host and paths")
    groups: dict[bytes, list[Snapshot]] = {}
    for snap in snaps.values():
        groups.setdefault(snap.chain.group, []).append(snap)
    report.groups = len(groups)
    for snap in snaps.values():
        link = snap.chain
        sid = snap.id[:16]
        if link.previous is None:
            if link.seq != 0:
                report.problems.append(f"snapshot {sid}: sequence number {link.seq} but no previous snapshot")
            continue
        prev = snaps.get(link.previous)
        if prev is None:
            if f"snapshots/{link.previous}" in removed:
                report.notes.append(f"snapshot {sid}: previous snapshot {link.previous[:16]} was removed "
                                    "by a recorded operation")
            else:
                report.problems.append(f"snapshot {sid}: previous snapshot {link.previous[:16]} is missing "
                                       "and no log entry records its removal (deleted)")
            continue
        if prev.chain.group != link.group or prev.chain.seq != link.seq - 1:
            report.problems.append(f"snapshot {sid}: its previous snapshot {prev.id[:16]} is not the one before it "
                                   "in its group (re-ordered or inserted)")
        if prev.datetime > snap.datetime:
            if getattr(snap, "original", None):  # copied history keeps its times but joins the chain late
                report.notes.append(f"snapshot {sid}: a copy, older than its previous snapshot {prev.id[:16]}")
            else:
                report.problems.append(f"snapshot {sid}: older than its previous snapshot {prev.id[:16]} (re-ordered)")
    children: dict[str, int] = {}
    for snap in snaps.values():
        if snap.chain.previous:
            children[snap.chain.previous] = children.get(snap.chain.previous, 0) + 1
    forks = [p for p, n in children.items() if n > 1]
    if forks:
        report.notes.append(f"{len(forks)} fork(s) from concurrent backups of the same group")
    recorded = {name for e in log.entries if not e.problems for name in e.doc.get("added", [])}
    for snap in snaps.values():
        if f"snapshots/{snap.id}" not in recorded:
            report.problems.append(f"snapshot {snap.id[:16]}: no log entry records adding it (inserted outside "
                                   "strongroom, or its log entry was lost)")
    present = set(repo.snapshot_ids())
    for entry in log.entries:
        for name in entry.doc.get("added", []) if not entry.problems else []:
            if name.startswith("snapshots/") and name not in removed and name.split("/", 1)[1] not in present:
                report.problems.append(f"{name[:26]}: recorded as added by log entry {entry.seq} but missing, "
                                       "and no log entry records its removal (deleted)")
    report.problems[:0] = [f"log: {p}" for p in log.problems] + [
        f"log entry {e.seq} ({e.hash[:16]}): {p}" for e in log.entries for p in e.problems]
    return report


def current_receipt(repo: Repository) -> str:
    """The head of the audit log, shortened: keep it somewhere the storage holder cannot reach."""
    from strongroom.audit import list_entry_names
    names = list_entry_names(repo)
    if not names:
        raise UsageError("the repository has no audit log yet (it was created before logs existed)")
    top = names[-1][0]
    return sorted(h for seq, h, _ in names if seq == top)[0][:RECEIPT_LENGTH]


@dataclass
class ReceiptReport:
    receipt: str
    entry_seq: int = -1
    entries_covered: int = 0
    snapshots_covered: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.entry_seq >= 0


def verify_receipt(repo: Repository, receipt: str) -> ReceiptReport:
    receipt = receipt.strip().lower()
    if len(receipt) < MIN_RECEIPT_LENGTH or any(c not in "0123456789abcdef" for c in receipt):
        raise UsageError(f"invalid receipt {receipt!r}: at least {MIN_RECEIPT_LENGTH} hex digits")
    log = read_log(repo)
    report = ReceiptReport(receipt)
    by_hash = {e.hash: e for e in log.entries}
    matches = [e for e in log.entries if e.hash.startswith(receipt)]
    if not matches:
        report.problems.append("no log entry has this hash: the history the receipt covers was removed or altered")
        return report
    report.entry_seq = matches[0].seq
    removed = log.removed_objects()
    present = set(repo.snapshot_ids())
    todo, seen = [matches[0].hash], set()
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        entry = by_hash.get(digest)
        if entry is None:
            report.problems.append(f"log entry {digest[:16]} is missing (deleted)")
            continue
        report.entries_covered += 1
        report.problems += [f"log entry {entry.seq} ({digest[:16]}): {p}" for p in entry.problems]
        todo += entry.previous
        for name in entry.doc.get("added", []):
            if name.startswith("snapshots/"):
                report.snapshots_covered += 1
                if name.split("/", 1)[1] not in present and name not in removed:
                    report.problems.append(f"{name[:26]}: covered by the receipt but missing, and no log entry "
                                           "records its removal (deleted)")
    if matches[0].seq > 0 and report.entries_covered < matches[0].seq + 1:
        report.problems.append(f"only {report.entries_covered} of {matches[0].seq + 1} entries reachable (gap)")
    # Snapshots covered must also be unaltered: their names are content hashes, and loading checks that.
    for entry in (by_hash[h] for h in seen if h in by_hash):
        for name in entry.doc.get("added", []):
            sid = name.split("/", 1)[1] if name.startswith("snapshots/") else None
            if sid and sid in present:
                try:
                    repo.load_snapshot(sid)
                except StrongroomError as e:
                    report.problems.append(f"snapshot {sid[:16]}: {e}")
    return report
