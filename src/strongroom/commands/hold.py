"""Legal holds: a held snapshot is never removed (by a policy, by id, or by re-tagging) until
its hold is released.

A hold is a sealed object (magic ``SRHD``) at ``holds/<snapshot id>`` whose payload is JSON
``{"snapshot", "reason", "time", "hostname", "username"}``. Placing a hold again replaces the
record (atomic store); releasing deletes it. See spec/repository-format.md, "Legal holds".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from strongroom.crypto import sealed
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError, UnsupportedFormat, UsageError
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot

MAGIC_HOLD = b"SRHD"
HOLDS = "holds"


@dataclass
class Hold:
    snapshot: str
    reason: str
    time: str
    hostname: str
    username: str

    def to_json(self) -> dict:
        return asdict(self)


def _path(snapshot_id: str) -> str:
    return f"{HOLDS}/{snapshot_id}"


def load_holds(repo: Repository) -> dict[str, Hold]:
    """Every hold, by snapshot id. An unreadable hold record still holds its snapshot: a damaged
    record must never make a snapshot removable."""
    holds = {}
    for name, _ in repo.storage.list(HOLDS):
        snapshot_id = name.rsplit("/", 1)[1]
        try:
            doc = json.loads(sealed.unseal(repo.master, MAGIC_HOLD, repo.storage.load(name), name))
            hold = Hold(**{k: doc[k] for k in ("snapshot", "reason", "time", "hostname", "username")})
            if hold.snapshot != snapshot_id:
                raise ValueError("record names another snapshot")
        except ObjectNotFound:
            continue
        except (IntegrityError, UnsupportedFormat, ValueError, KeyError, TypeError) as e:
            hold = Hold(snapshot_id, f"(unreadable hold record: {e})", "", "", "")
        holds[snapshot_id] = hold
    return holds


def encode_hold(hold: Hold) -> bytes:
    return json.dumps(hold.to_json(), sort_keys=True, separators=(",", ":")).encode()


def write_hold(repo: Repository, snapshot_id: str, reason: str, *, when: str | None = None) -> Hold:
    hold = Hold(snapshot_id, reason, when or datetime.now(timezone.utc).isoformat(), repo.hostname, repo.username)
    repo.storage.store(_path(snapshot_id), sealed.seal(repo.master, MAGIC_HOLD, encode_hold(hold)))
    return hold


def delete_hold(repo: Repository, snapshot_id: str) -> bool:
    try:
        repo.storage.delete(_path(snapshot_id))
        return True
    except ObjectNotFound:
        return False


def place_holds(repo: Repository, selectors: list[str], reason: str) -> list[tuple[Snapshot, Hold]]:
    if not reason.strip():
        raise UsageError("a hold needs a --reason")
    repo.require_full_key("place legal holds")
    with repo.lock(exclusive=False):
        snaps = [repo.find_snapshot(s) for s in selectors]
        placed = [(snap, write_hold(repo, snap.id, reason)) for snap in snaps]
        repo.audit("hold", {"reason": reason}, added=[_path(snap.id) for snap in snaps])
        return placed


def release_holds(repo: Repository, selectors: list[str]) -> list[tuple[str, bool]]:
    """Release holds; a selector may name a snapshot that no longer exists (a full 64-hex id)."""
    repo.require_full_key("release legal holds")
    with repo.lock(exclusive=False):
        holds = load_holds(repo)
        released = []
        for selector in selectors:
            matches = [i for i in holds if i.startswith(selector.lower())] if selector != "latest" else []
            if selector == "latest" or not matches:
                snapshot_id = repo.find_snapshot(selector).id
            elif len(matches) > 1:
                raise UsageError(f"snapshot id prefix {selector} is ambiguous ({len(matches)} held snapshots match)")
            else:
                snapshot_id = matches[0]
            released.append((snapshot_id, delete_hold(repo, snapshot_id)))
        repo.audit("release", {}, removed=[_path(i) for i, was_held in released if was_held])
        return released


def refuse_if_held(holds: dict[str, Hold], snapshot_ids: list[str], action: str) -> None:
    held = [i for i in snapshot_ids if i in holds]
    if held:
        first = holds[held[0]]
        raise HeldSnapshot(f"cannot {action} snapshot {held[0][:8]}: under legal hold ({first.reason}); "
                           f"{len(held)} held snapshot(s) in the request, nothing changed "
                           "(run `strongroom release` first)")


class HeldSnapshot(StrongroomError):
    pass
