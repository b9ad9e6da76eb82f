"""The audit log: one signed, encrypted entry per mutating operation, chained by hash.

The one API for every command that changes a repository::

    repo.audit(command, args, added=[...], removed=[...], result="ok")

- ``command``: the CLI command name, e.g. ``"forget"``, ``"key add"``.
- ``args``: a JSON-serialisable dict of the options that matter. NEVER pass secrets; as a safety
  net, keys containing "password", "passphrase" or "secret" are dropped.
- ``added`` / ``removed``: storage names of the objects written or deleted (``snapshots/<id>``,
  ``keys/<id>``, ``index/<id>``, ``data/..``). ``check --chain`` treats a snapshot as legitimately
  gone only if some entry lists it in ``removed``, so forget MUST list the snapshots it deletes;
  and every signed snapshot must be listed in some entry's ``added``, so anything that calls
  ``repo.save_snapshot`` (tag, copy, repair) MUST list the new snapshot (and the old one in
  ``removed`` if it deletes it).
- ``result``: ``"ok"`` or a one-line description of a failure or partial result.
Call it once, after the operation's objects are stored (or deleted). Write-only keys can append.

Entries are boxed objects (crypto/boxed.py, magic SRLG) stored as ``log/<seq:016d>-<hash>``,
hash = BLAKE3 of the stored bytes. The cleartext header holds the sequence number and the
hashes of the entries at seq-1 this writer saw (normally one; more after concurrent appends).
Appending needs only a listing, so a writer that cannot decrypt the log can still extend it.
Format: spec/repository-format.md §16.5.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import blake3

from strongroom.crypto import boxed
from strongroom.crypto.signing import SignerInfo
from strongroom.errors import IntegrityError, ObjectNotFound, UnsupportedFormat

if TYPE_CHECKING:
    from strongroom.repository import Repository

LOG_PREFIX = "log"
_NAME = re.compile(r"log/(\d{16})-([0-9a-f]{64})")
_SEQ = struct.Struct("<Q")
_SECRET_WORDS = ("password", "passphrase", "secret")
MAX_PREVIOUS = 255


@dataclass
class LogEntry:
    name: str
    seq: int
    hash: str
    previous: list[str] = field(default_factory=list)
    doc: dict = field(default_factory=dict)
    signer: SignerInfo | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"seq": self.seq, "hash": self.hash, "previous": self.previous, **self.doc,
                "signer": self.signer.short_id if self.signer else None,
                "signer_kind": self.signer.kind_name if self.signer else None,
                "verified": not self.problems, "problems": self.problems}


@dataclass
class LogReport:
    entries: list[LogEntry]
    problems: list[str]  # gaps and alterations found across the log

    @property
    def ok(self) -> bool:
        return not self.problems and all(not e.problems for e in self.entries)

    @property
    def heads(self) -> list[LogEntry]:
        top = max((e.seq for e in self.entries), default=None)
        return sorted((e for e in self.entries if e.seq == top), key=lambda e: e.hash)

    def removed_objects(self) -> set[str]:
        return {name for e in self.entries if not e.problems for name in e.doc.get("removed", [])}


def encode_header(seq: int, previous: list[str]) -> bytes:
    return _SEQ.pack(seq) + bytes([len(previous)]) + b"".join(bytes.fromhex(p) for p in previous)


def decode_header(header: bytes, what: str) -> tuple[int, list[str]]:
    if len(header) < _SEQ.size + 1 or len(header) != _SEQ.size + 1 + 32 * header[_SEQ.size]:
        raise IntegrityError(f"{what}: malformed log entry header")
    (seq,) = _SEQ.unpack_from(header)
    n = header[_SEQ.size]
    return seq, [header[9 + 32 * i: 9 + 32 * (i + 1)].hex() for i in range(n)]


def list_entry_names(repo: Repository) -> list[tuple[int, str, str]]:
    """(seq, hash, name) of every well-named entry under log/, sorted."""
    out = []
    for name, _ in repo.storage.list(LOG_PREFIX):
        m = _NAME.fullmatch(name)
        if m:
            out.append((int(m.group(1)), m.group(2), name))
    return sorted(out)


def _clean_args(args: dict) -> dict:
    return {k: v for k, v in args.items() if not any(w in k.lower() for w in _SECRET_WORDS)}


def append_entry(repo: Repository, command: str, args: dict, *, added: list[str], removed: list[str],
                 result: str) -> str:
    names = list_entry_names(repo)
    top = names[-1][0] if names else -1
    previous = [h for seq, h, _ in names if seq == top][:MAX_PREVIOUS]
    doc = {"time": datetime.now(timezone.utc).isoformat(), "host": repo.hostname, "user": repo.username,
           "key": repo.key_id, "command": command, "args": _clean_args(args), "added": added, "removed": removed,
           "result": result}
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    data = boxed.seal_boxed(repo.master.recipient_public, repo.signer, boxed.MAGIC_LOG,
                            encode_header(top + 1, previous), payload)
    name = f"{LOG_PREFIX}/{top + 1:016d}-{blake3.blake3(data).hexdigest()}"
    repo.storage.store(name, data)
    return name


def _read_entry(repo: Repository, seq: int, digest: str, name: str) -> LogEntry:
    entry = LogEntry(name, seq, digest)
    try:
        data = repo.storage.load(name)
        if blake3.blake3(data).hexdigest() != digest:
            raise IntegrityError("content does not match its name (altered or damaged)")
        header, payload, entry.signer = boxed.open_boxed(repo.master, data, boxed.MAGIC_LOG, name)
        header_seq, entry.previous = decode_header(header, name)
        if header_seq != seq:
            raise IntegrityError(f"signed sequence number {header_seq} differs from its name (renamed)")
        entry.doc = json.loads(payload)
        if not isinstance(entry.doc, dict):
            raise IntegrityError("entry is not a JSON object")
    except (IntegrityError, UnsupportedFormat, ValueError) as e:
        entry.problems.append(str(e).removeprefix(f"{name}: "))
    return entry


def read_log(repo: Repository) -> LogReport:
    """Every entry, decrypted and verified, and the chain checked for gaps (needs a full key)."""
    repo.require_full_key("read the audit log")
    problems = []
    for name, _ in repo.storage.list(LOG_PREFIX):
        if not _NAME.fullmatch(name):
            problems.append(f"{name}: not a log entry name (foreign or renamed object)")
    entries = []
    for seq, digest, name in list_entry_names(repo):
        try:
            entries.append(_read_entry(repo, seq, digest, name))
        except ObjectNotFound:
            problems.append(f"{name}: disappeared while reading")
    by_hash = {e.hash: e for e in entries}
    seqs = {e.seq for e in entries}
    for missing in sorted(set(range(max(seqs) + 1)) - seqs if seqs else ()):
        problems.append(f"gap: no entry with sequence number {missing} (deleted)")
    for e in entries:
        if e.problems:
            continue
        if e.seq == 0 and e.previous:
            e.problems.append("first entry names a previous entry")
        elif e.seq > 0 and not e.previous:
            e.problems.append("names no previous entry")
        for p in e.previous:
            prev = by_hash.get(p)
            if prev is None:
                e.problems.append(f"previous entry {p[:16]} is missing (deleted)")
            elif prev.seq != e.seq - 1:
                e.problems.append(f"previous entry {p[:16]} has sequence number {prev.seq}, not {e.seq - 1}")
    return LogReport(entries, problems)


def log_since(report: LogReport, since: datetime) -> list[LogEntry]:
    """Entries at or after ``since``; entries that could not be read are always included."""
    out = []
    for e in report.entries:
        try:
            when = datetime.fromisoformat(e.doc["time"])
        except (KeyError, TypeError, ValueError):
            out.append(e)
            continue
        if when >= since:
            out.append(e)
    return out
