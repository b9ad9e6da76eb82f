"""Snapshot records: what was backed up, when, from where, and the root tree.

A snapshot is a sealed object (magic SRSN) holding canonical JSON; its id is the BLAKE3 hash of
the stored bytes. See spec/repository-format.md, "Snapshots".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from strongroom.errors import IntegrityError


@dataclass
class Summary:
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    errors: int = 0
    bytes_read: int = 0
    bytes_total: int = 0  # logical size of all files in the snapshot
    bytes_added: int = 0  # bytes of new blobs as stored (compressed and encrypted)
    blobs_added: int = 0
    duration_s: float = 0.0


@dataclass
class Snapshot:
    time: str  # ISO 8601 with a UTC offset
    hostname: str
    username: str
    paths: list[str]
    tree: str  # hex id of the root tree
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    program_version: str = ""
    summary: Summary = field(default_factory=Summary)
    original: str | None = None  # for a copy: the id of the snapshot it copies (stored only if set)
    catalog: str | None = None  # hex id of the message catalogue's root tree (§23; stored only if set)
    id: str = ""  # not stored: the object's name
    # Not stored in the JSON either: from a boxed snapshot's header and signature (spec §16.4).
    chain: Any = field(default=None, repr=False, compare=False)  # strongroom.chain.ChainLink
    signer: Any = field(default=None, repr=False, compare=False)  # strongroom.crypto.signing.SignerInfo

    def to_json(self) -> dict:
        doc = asdict(self)
        del doc["id"], doc["chain"], doc["signer"]
        if doc["original"] is None:  # absent unless copied, so other snapshots encode as before
            del doc["original"]
        if doc["catalog"] is None:  # absent unless catalogued (§23)
            del doc["catalog"]
        doc["version"] = 1
        return doc

    def encode(self) -> bytes:
        # ASCII-only JSON: paths from os.fsdecode may carry surrogate escapes for non-UTF-8 bytes,
        # which survive as \udcXX escapes and decode back to the same str (and os.fsencode bytes).
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def decode(cls, data: bytes, snapshot_id: str, what: str) -> Snapshot:
        try:
            doc = json.loads(data)
            if doc.pop("version") != 1:
                raise ValueError("unknown snapshot version")
            doc["summary"] = Summary(**doc.get("summary", {}))
            snap = cls(**doc, id=snapshot_id)
            datetime.fromisoformat(snap.time)
            if len(bytes.fromhex(snap.tree)) != 32:
                raise ValueError("tree id must be 32 bytes")
            if snap.original is not None and (not isinstance(snap.original, str) or len(snap.original) != 64
                                              or len(bytes.fromhex(snap.original)) != 32):
                raise ValueError("original must be a 64-hex snapshot id")
            if snap.catalog is not None and (not isinstance(snap.catalog, str) or len(snap.catalog) != 64
                                             or len(bytes.fromhex(snap.catalog)) != 32):
                raise ValueError("catalog must be a 64-hex tree id")
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"{what}: malformed snapshot ({e})") from None
        return snap

    def root_trees(self) -> list[bytes]:
        """Every tree this snapshot keeps alive: the file tree, then the message catalogue if any.
        Whatever walks snapshots for reachability (prune, check, copy, stats, repair) starts here."""
        roots = [bytes.fromhex(self.tree)]
        if self.catalog is not None:
            roots.append(bytes.fromhex(self.catalog))
        return roots

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def datetime(self) -> datetime:
        return datetime.fromisoformat(self.time)
