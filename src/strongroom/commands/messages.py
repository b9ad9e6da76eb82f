"""Message use cases: search, diff, export and stats over the snapshots' message catalogues, and
``index`` to catalogue snapshots taken without one (spec §23, README "Finding messages").

Queries read the local messages cache, first bringing it up to date with the repository (a
snapshot missing from the cache is read from its catalogue; a cache that was deleted is rebuilt).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Callable, Iterator

from strongroom.commands.hold import delete_hold, load_holds, write_hold
from strongroom.errors import StrongroomError, UsageError
from strongroom.messages.catalog_build import CatalogStats, build_catalog
from strongroom.messages.catalog_format import Record
from strongroom.messages.catalog_index import MessageIndex
from strongroom.messages.catalog_query import (ConversationDiff, Filters, Found, PlatformStats, conversation_records,
                                               diff, record_json, search, stats)
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot
from strongroom.writer import BlobWriter

FORMATS = ("jsonl", "native")


class NotCatalogued(StrongroomError):
    """A snapshot has no message catalogue (taken with --no-catalog, before catalogues, or
    without a recognised export)."""


def parse_time(text: str | None, option: str) -> int | None:
    """ISO 8601 date or date-time (UTC unless it has an offset) as epoch milliseconds."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid {option} {text!r}: use an ISO date or date-time, e.g. 2026-11-01 or "
                         f"2026-11-01T09:30+01:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def format_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _open_index(repo: Repository, snaps: list[Snapshot], on_error=None) -> MessageIndex:
    index = MessageIndex(repo)
    try:
        index.forget_missing(set(repo.snapshot_ids()))
        index.ensure(snaps, on_error=on_error)
    except BaseException:
        index.close()
        raise
    return index


def _catalogued(repo: Repository, selector: str) -> Snapshot:
    snap = repo.find_snapshot(selector)
    if snap.catalog is None:
        raise NotCatalogued(f"snapshot {snap.short_id} has no message catalogue "
                            f"(run `strongroom messages index {snap.short_id}` to build one)")
    return snap


# -- search ----------------------------------------------------------------------------------

@dataclass
class SearchResult:
    matches: list[Found]
    snapshots: list[Snapshot]  # searched (catalogued), oldest first
    uncatalogued: list[str]  # ids of snapshots in scope without a catalogue
    unreadable: list[str] = field(default_factory=list)  # "<id>: why" for catalogues that could not be read

    def to_json(self) -> dict:
        short = {s.id: s for s in self.snapshots}
        return {"query_snapshots": [s.id for s in self.snapshots], "uncatalogued_snapshots": self.uncatalogued,
                "unreadable_snapshots": self.unreadable,
                "matches": [{**f.record.to_json(), "time": format_time(f.record.time_ms),
                             "snapshots": [{"id": i, "time": short[i].time} for i in f.snapshots]}
                            for f in self.matches]}


def run_search(repo: Repository, filters: Filters, *, snapshot: str | None = None,
               all_snapshots: bool = False) -> SearchResult:
    if snapshot is not None and all_snapshots:
        raise UsageError("give either --snapshot or --all-snapshots, not both")
    repo.require_full_key("search messages")
    with repo.lock(exclusive=False):
        scope = [repo.find_snapshot(snapshot)] if snapshot is not None else repo.snapshots()
        if snapshot is not None and scope[0].catalog is None:
            _catalogued(repo, snapshot)  # raises: say how to fix it
        snaps = [s for s in scope if s.catalog is not None]
        unreadable: dict[str, str] = {}
        # One damaged catalogue must not hide the others' messages: report it, search the rest.
        with _open_index(repo, snaps, lambda s, e: unreadable.__setitem__(s.id, str(e))) as index:
            snaps = [s for s in snaps if s.id not in unreadable]
            matches = search(index, [s.id for s in snaps], filters)
    return SearchResult(matches, snaps, [s.id for s in scope if s.catalog is None],
                        [f"{i}: {why}" for i, why in unreadable.items()])


# -- diff ------------------------------------------------------------------------------------

@dataclass
class MessageDiffResult:
    before: Snapshot
    after: Snapshot
    conversations: list[ConversationDiff]

    def totals(self) -> dict[str, int]:
        return {"added": sum(len(c.added) for c in self.conversations),
                "edited": sum(len(c.edited) for c in self.conversations),
                "deleted": sum(len(c.deleted) for c in self.conversations)}

    def to_json(self) -> dict:
        def one(r: Record) -> dict:
            return {**r.to_json(), "time": format_time(r.time_ms)}
        return {"before": self.before.id, "after": self.after.id, "totals": self.totals(),
                "conversations": [{"platform": c.platform, "conversation": c.conversation,
                                   "added": [one(r) for r in c.added], "deleted": [one(r) for r in c.deleted],
                                   "edited": [{"before": one(a), "after": one(b)} for a, b in c.edited]}
                                  for c in self.conversations]}


def run_diff(repo: Repository, a: str, b: str) -> MessageDiffResult:
    repo.require_full_key("compare messages")
    with repo.lock(exclusive=False):
        before, after = _catalogued(repo, a), _catalogued(repo, b)
        with _open_index(repo, [before, after]) as index:
            return MessageDiffResult(before, after, diff(index, before.id, after.id))


# -- export ----------------------------------------------------------------------------------

@dataclass
class ExportResult:
    snapshot: Snapshot
    platform: str
    conversation: str
    messages: int
    format: str

    def to_json(self) -> dict:
        return {"snapshot": self.snapshot.id, "platform": self.platform, "conversation": self.conversation,
                "messages": self.messages, "format": self.format}


def run_export(repo: Repository, selector: str, out: BinaryIO, *, conversation: str, fmt: str = "jsonl",
               platform: str | None = None, since_ms: int | None = None, until_ms: int | None = None) -> ExportResult:
    """Write one conversation of a snapshot (optionally a time range) to ``out``, in time order:
    JSON lines of records, or the platform's own export format (strongroom.messages.formats)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    repo.require_full_key("export messages")
    with repo.lock(exclusive=False):
        snap = _catalogued(repo, selector)
        with _open_index(repo, [snap]) as index:
            found = _conversation_platforms(index, snap.id, conversation)
            if platform is not None:
                found &= {platform}
            if not found:
                raise StrongroomError(f"snapshot {snap.short_id} has no conversation {conversation!r}"
                                      + (f" on {platform}" if platform else "") + " (see `strongroom messages stats`)")
            if len(found) > 1:
                raise UsageError(f"conversation {conversation!r} exists on {', '.join(sorted(found))}: "
                                 f"choose one with --platform")
            chosen = found.pop()
            filters = Filters(conversation=conversation, platform=chosen, since_ms=since_ms, until_ms=until_ms)
            counter = _Counter(conversation_records(index, snap.id, filters, repo.scratch_folder()))
            if fmt == "jsonl":
                for record in counter:
                    out.write(record_json(record).encode() + b"\n")
            else:
                from strongroom.messages.formats import write_native
                try:
                    write_native(chosen, (r.to_message() for r in counter), out)
                except ValueError as e:
                    raise UsageError(f"cannot write {chosen} natively: {e} (use --format jsonl)") from None
            return ExportResult(snap, chosen, conversation, counter.count, fmt)


def _conversation_platforms(index: MessageIndex, snapshot_id: str, conversation: str) -> set[str]:
    wanted = conversation.casefold()
    platforms = set()
    for part_id in index.snapshot_parts(snapshot_id) or ():
        for chunk_id in index.part(part_id).chunks:
            for platform, s in index.chunk(chunk_id)[0].per_platform.items():
                if platform not in platforms and any(c.casefold() == wanted for c in s["c"]):
                    platforms.add(platform)
    return platforms


class _Counter:
    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self.count = 0

    def __iter__(self) -> Iterator[Record]:
        for r in self._records:
            self.count += 1
            yield r


# -- stats -----------------------------------------------------------------------------------

@dataclass
class MessageStatsResult:
    snapshot: Snapshot
    platforms: list[PlatformStats]

    def to_json(self) -> dict:
        return {"snapshot": self.snapshot.id,
                "platforms": [{"platform": p.platform, "conversations": p.conversations, "messages": p.messages,
                               "authors": p.authors, "first": format_time(p.first_ms), "last": format_time(p.last_ms)}
                              for p in self.platforms]}


def run_stats(repo: Repository, selector: str) -> MessageStatsResult:
    repo.require_full_key("read message statistics")
    with repo.lock(exclusive=False):
        snap = _catalogued(repo, selector)
        with _open_index(repo, [snap]) as index:
            return MessageStatsResult(snap, stats(index, snap.id))


# -- index -----------------------------------------------------------------------------------

@dataclass
class Indexed:
    old_id: str
    new_id: str | None  # None: no recognised export, nothing written
    stats: CatalogStats


@dataclass
class IndexResult:
    indexed: list[Indexed] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # ids that had a catalogue

    def to_json(self) -> dict:
        return {"indexed": [{"snapshot": i.old_id, "new_id": i.new_id, "exports": i.stats.exports,
                             "platforms": i.stats.platforms, "parts": i.stats.parts + i.stats.parts_reused,
                             "messages_read": i.stats.messages} for i in self.indexed],
                "already_catalogued": self.already}


def run_index(repo: Repository, selector: str | None = None, *, all_snapshots: bool = False,
              readers=None, warn: Callable[[str], None] = lambda m: None) -> IndexResult:
    """Build catalogues for snapshots that have none. A snapshot is immutable, so a catalogued one
    is written anew with its ``catalog`` field and the old object removed, as `tag` does (same
    place in its chain; a legal hold moves with it; both ids go to the audit log)."""
    if (selector is None) == (not all_snapshots):
        raise UsageError("give a snapshot or --all")
    repo.require_full_key("catalogue snapshots")
    result = IndexResult()
    with repo.lock(exclusive=True), MessageIndex(repo) as index:
        holds = load_holds(repo)
        snaps = [repo.find_snapshot(selector)] if selector is not None else repo.snapshots()
        added, removed = [], []
        for snap in snaps:
            if snap.catalog is not None:
                result.already.append(snap.id)
                continue
            with BlobWriter(repo) as writer:  # files unchanged since an older snapshot are not read again
                root, stats = build_catalog(repo, writer, bytes.fromhex(snap.tree), readers=readers,
                                            reuse=index.part_nodes, memos=index.memos, warn=warn,
                                            verdicts=index.verdicts)
                writer.flush()
                index.part_nodes.flush()
                index.memos.flush()
                index.verdicts.flush()
            if root is None:
                result.indexed.append(Indexed(snap.id, None, stats))
                continue
            fresh = dataclasses.replace(snap, catalog=root.hex(), id="")
            new_id = repo.save_rewritten_snapshot(fresh, snap)
            if snap.id in holds:
                write_hold(repo, new_id, holds[snap.id].reason, when=holds[snap.id].time)
            repo.remove_snapshot(snap.id)
            if snap.id in holds:
                delete_hold(repo, snap.id)
            result.indexed.append(Indexed(snap.id, new_id, stats))
            added.append(f"snapshots/{new_id}")
            removed.append(f"snapshots/{snap.id}")
        if added:
            repo.audit("messages index", {"all": all_snapshots}, added=added, removed=removed)
    return result
