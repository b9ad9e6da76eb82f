"""Tag: change snapshots' tags. Snapshot objects are immutable, so each changed snapshot is
written anew with the new tags, and only then is the old object removed; a crash in between
leaves both (the same backup listed twice), never neither. A legal hold moves to the new id
(the new hold is written before the old snapshot goes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from strongroom.commands.hold import delete_hold, load_holds, write_hold
from strongroom.errors import UsageError
from strongroom.repository import Repository


@dataclass
class TagChange:
    old_id: str
    new_id: str | None  # None: the tags were already as asked, nothing written
    tags: list[str]


def new_tags(current: list[str], add: list[str], remove: list[str], set_to: list[str] | None) -> list[str]:
    tags = list(set_to) if set_to is not None else list(current)
    tags += [t for t in add if t not in tags]
    return [t for t in tags if t not in remove]


def run_tag(repo: Repository, selectors: list[str], *, add: list[str] = (), remove: list[str] = (),
            set_to: list[str] | None = None) -> list[TagChange]:
    if not add and not remove and set_to is None:
        raise UsageError("nothing to do: give --add, --remove or --set")
    if set_to is not None and (add or remove):
        raise UsageError("--set replaces all tags; do not combine it with --add or --remove")
    if not selectors:
        raise UsageError("give at least one snapshot")
    for tag in [*add, *remove, *(set_to or [])]:
        if not tag or "," in tag:
            raise UsageError(f"invalid tag {tag!r}: tags are non-empty and contain no comma")
    changes = []
    added: list[str] = []
    removed: list[str] = []
    with repo.lock(exclusive=True):
        holds = load_holds(repo)
        snaps = []
        for selector in selectors:
            snap = repo.find_snapshot(selector)
            if snap.id not in {s.id for s in snaps}:
                snaps.append(snap)
        for snap in snaps:
            tags = new_tags(snap.tags, list(add), list(remove), set_to)
            if tags == snap.tags:
                changes.append(TagChange(snap.id, None, tags))
                continue
            fresh = dataclasses.replace(snap, tags=tags, id="")
            new_id = repo.save_rewritten_snapshot(fresh, snap)
            if snap.id in holds:
                hold = holds[snap.id]
                write_hold(repo, new_id, hold.reason, when=hold.time)
            repo.remove_snapshot(snap.id)
            if snap.id in holds:
                delete_hold(repo, snap.id)
            changes.append(TagChange(snap.id, new_id, tags))
            added.append(f"snapshots/{new_id}")
            removed.append(f"snapshots/{snap.id}")
        repo.audit("tag", {"add": list(add), "remove": list(remove), "set": set_to}, added=added, removed=removed)
    return changes
