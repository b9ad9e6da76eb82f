"""Questions answered from the messages cache: search, diff, export, stats.

Work is done per distinct chunk of records: a chunk shared by many snapshots is decrypted and
scanned once, and each match is credited to every snapshot holding the chunk. A text search
first looks for the (case-folded) query in the whole chunk, a C-speed test that skips most
chunks without parsing a record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from strongroom.messages.catalog_format import Record, decode_record
from strongroom.messages.catalog_index import MessageIndex
from strongroom.messages.external_sort import ExternalSorter

# Characters JSON escapes inside strings: a query holding one cannot be found in raw record lines.
_ESCAPED = set('"\\') | {chr(c) for c in range(0x20)} | {"\u2028", "\u2029"}
# The non-ASCII characters whose case folding yields ASCII letters (ß -> ss, the Kelvin sign ->
# k, ligatures ...; tests/test_catalog.py recomputes the list from Unicode). A chunk free of them
# can be tested for an ASCII needle with bytes.lower(), in C, without decoding.
FOLDS_TO_ASCII = "ßİŉſǰẖẗẘẙẚẞ\u212aﬀﬁﬂﬃﬄﬅﬆ"
_FOLDS_TO_ASCII_UTF8 = tuple(c.encode() for c in FOLDS_TO_ASCII)


def _plain_folding(data: bytes) -> bool:
    """Whether ASCII-lowering ``data`` finds every ASCII string its case folding holds."""
    return data.isascii() or not any(seq in data for seq in _FOLDS_TO_ASCII_UTF8)


@dataclass(frozen=True)
class Filters:
    query: str = ""
    author: str | None = None  # exact author name (case-insensitive)
    conversation: str | None = None  # exact conversation name (case-insensitive)
    platform: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive

    def matches(self, r: Record) -> bool:
        if self.query and self.query.casefold() not in r.text.casefold():
            return False
        if self.author is not None and r.author.casefold() != self.author.casefold():
            return False
        if self.conversation is not None and r.conversation.casefold() != self.conversation.casefold():
            return False
        if self.platform is not None and r.platform != self.platform:
            return False
        if self.since_ms is not None and r.time_ms < self.since_ms:
            return False
        if self.until_ms is not None and r.time_ms >= self.until_ms:
            return False
        return True

    def may_match_chunk(self, chunk: bytes) -> bool:
        """A cheap superset test on a chunk's raw lines (false only if no record can match)."""
        needles = [s for s in (self.query, self.author, self.conversation) if s]
        if not needles:
            return True
        folded = chunk.decode("utf-8", "surrogatepass").casefold()
        return all(n.casefold() in folded for n in needles if not (_ESCAPED & set(n)))

    def needles(self) -> list[bytes]:
        """Byte strings every line of a matching record contains, once lowered with bytes.lower()
        (valid for chunks without FOLDS_TO_ASCII characters): the ASCII query, and the exact
        JSON of an ASCII author or conversation field."""
        out = []
        if self.query and self.query.isascii() and not (_ESCAPED & set(self.query)):
            out.append(self.query.lower().encode())
        for key, value in (("a", self.author), ("c", self.conversation)):
            if value and value.isascii() and not (_ESCAPED & set(value)):
                out.append(f'"{key}":"{value.lower()}"'.encode())
        return out


def _candidate_lines(data: bytes, filters: Filters, needles: list[bytes]) -> Iterable[bytes] | None:
    """The lines of a chunk that may match, or None when none can. Fast path (C only): ASCII
    needles against the ASCII-lowered bytes; otherwise the case-folded text decides per chunk."""
    if needles and _plain_folding(data):
        lowered = data.lower()
        if not all(n in lowered for n in needles):
            return None
        return [line for line in data.split(b"\n") if line and all(n in line.lower() for n in needles)]
    if not filters.may_match_chunk(data):
        return None
    return data.split(b"\n")


def _chunk_owners(index: MessageIndex, snapshot_ids: list[str]) -> dict[bytes, int]:
    """Each distinct chunk of the snapshots -> bit mask of the snapshots (by position) holding it."""
    owners: dict[bytes, int] = {}
    part_owners: dict[bytes, int] = {}
    for i, snapshot_id in enumerate(snapshot_ids):
        for part_id in index.snapshot_parts(snapshot_id) or ():
            part_owners[part_id] = part_owners.get(part_id, 0) | (1 << i)
    for part_id, mask in part_owners.items():
        for chunk_id in index.part(part_id).chunks:
            owners[chunk_id] = owners.get(chunk_id, 0) | mask
    return owners


@dataclass
class Found:
    record: Record
    snapshots: list[str]  # ids, in the order they were asked for (oldest first)


def search(index: MessageIndex, snapshot_ids: list[str], filters: Filters) -> list[Found]:
    """Every version of every message matching ``filters`` in any of the snapshots, with the
    snapshots it appears in; ordered by time, conversation and id."""
    found: dict[Record, int] = {}
    needles = filters.needles()
    platform_json = None if filters.platform is None else json.dumps(filters.platform).encode()
    for chunk_id, mask in _chunk_owners(index, snapshot_ids).items():
        stats, data = index.chunk_raw(chunk_id)
        if platform_json is not None and platform_json not in stats:  # a superset test on the stats' keys
            continue
        lines = _candidate_lines(data, filters, needles)
        if lines is None:
            continue
        what = f"catalogue chunk {chunk_id.hex()[:16]}"
        for line in lines:
            if line:
                record = decode_record(line, what)
                if filters.matches(record):
                    found[record] = found.get(record, 0) | mask
    # Versions of one message in the order they first appeared (lowest snapshot position).
    ordered = sorted(found.items(), key=lambda item: (item[0].time_ms, item[0].platform, item[0].conversation,
                                                      item[0].message_id, (item[1] & -item[1]).bit_length(),
                                                      item[0].text_hash))
    return [Found(r, [s for i, s in enumerate(snapshot_ids) if mask >> i & 1]) for r, mask in ordered]


@dataclass
class ConversationDiff:
    platform: str
    conversation: str
    added: list[Record] = field(default_factory=list)
    deleted: list[Record] = field(default_factory=list)
    edited: list[tuple[Record, Record]] = field(default_factory=list)  # (before, after)


def diff(index: MessageIndex, a: str, b: str) -> list[ConversationDiff]:
    """Messages added, deleted and edited from snapshot ``a`` to ``b``. Only chunks that are not
    in both are read: a message in a shared chunk is the same record on both sides. (A message
    key is assumed to occur once per snapshot, as the readers guarantee.)"""
    owners = _chunk_owners(index, [a, b])
    before: dict[tuple, Record] = {}
    after: dict[tuple, Record] = {}
    for chunk_id, mask in owners.items():
        if mask == 3:
            continue
        side = before if mask == 1 else after
        for record in index.chunk_records(chunk_id):
            side[record.key] = record
    out: dict[tuple[str, str], ConversationDiff] = {}

    def entry(r: Record) -> ConversationDiff:
        d = out.get((r.platform, r.conversation))
        if d is None:
            d = out[(r.platform, r.conversation)] = ConversationDiff(r.platform, r.conversation)
        return d

    for key, old in before.items():
        new = after.get(key)
        if new is None:
            entry(old).deleted.append(old)
        elif (new.text_hash, new.edited) != (old.text_hash, old.edited):
            entry(new).edited.append((old, new))
    for key, new in after.items():
        if key not in before:
            entry(new).added.append(new)
    by_time = lambda r: (r.time_ms, r.message_id)  # noqa: E731
    for d in out.values():
        d.added.sort(key=by_time)
        d.deleted.sort(key=by_time)
        d.edited.sort(key=lambda pair: by_time(pair[1]))
    return [out[k] for k in sorted(out)]


def conversation_records(index: MessageIndex, snapshot_id: str, filters: Filters,
                         scratch: str | None = None) -> Iterator[Record]:
    """One snapshot's records matching ``filters`` (a conversation, a time range), in time order,
    streamed. Parts written segment by segment are sorted only within each segment (spec §23.6),
    so the matches go through an external sort (temporary files in ``scratch``): memory stays
    bounded however long the conversation. A record found twice is given once."""
    with ExternalSorter(scratch) as sorter:
        for part_id in index.snapshot_parts(snapshot_id) or ():
            for chunk_id in index.part(part_id).chunks:
                stats, data = index.chunk(chunk_id)
                if filters.conversation is not None and not any(
                        filters.conversation.casefold() in (c.casefold() for c in s["c"])
                        for s in stats.per_platform.values()):
                    continue
                what = f"catalogue chunk {chunk_id.hex()[:16]}"
                for line in data.splitlines():
                    if line:
                        r = decode_record(line, what)
                        if filters.matches(r):
                            sorter.add((r.time_ms, r.platform, r.conversation, r.message_id, line))
        previous = None
        for *_, line in sorter.sorted():
            if line != previous:
                previous = line
                yield decode_record(line, "catalogue record")


@dataclass
class PlatformStats:
    platform: str
    conversations: int
    messages: int
    authors: int
    first_ms: int | None
    last_ms: int | None


def stats(index: MessageIndex, snapshot_id: str) -> list[PlatformStats]:
    merged: dict[str, dict] = {}
    for part_id in index.snapshot_parts(snapshot_id) or ():
        for chunk_id in index.part(part_id).chunks:
            for platform, s in index.chunk(chunk_id)[0].per_platform.items():
                m = merged.get(platform)
                if m is None:
                    m = merged[platform] = {"n": 0, "c": set(), "a": set(), "t0": s["t0"], "t1": s["t1"]}
                m["n"] += s["n"]
                m["c"].update(s["c"])
                m["a"].update(s["a"])
                m["t0"], m["t1"] = min(m["t0"], s["t0"]), max(m["t1"], s["t1"])
    return [PlatformStats(p, len(m["c"]), m["n"], len(m["a"]), m["t0"], m["t1"]) for p, m in sorted(merged.items())]


def record_json(r: Record) -> str:
    return json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True)
