"""Forget: remove snapshots chosen by a retention policy, or by id, never one under legal hold.

Only snapshot objects are removed; their data stays until `prune`. Takes the exclusive lock so
that no hold, tag change or other forget interleaves with the decision."""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.commands.hold import Hold, load_holds, refuse_if_held
from strongroom.errors import UsageError
from strongroom.policy import Decision, Policy, apply_policy
from strongroom.repository import Repository


@dataclass
class ForgetResult:
    decisions: list[Decision]
    holds: dict[str, Hold]
    removed: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def to_remove(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


def run_forget(repo: Repository, *, policy: Policy | None = None, snapshot_ids: list[str] = (),
               group_by: list[str] = ("host", "paths"), dry_run: bool = False) -> ForgetResult:
    if snapshot_ids and policy is not None and not policy.is_empty():
        raise UsageError("give either snapshot ids or --keep-* options, not both")
    if not snapshot_ids and (policy is None or policy.is_empty()):
        raise UsageError("refusing an empty policy (it would remove every snapshot): give at least one --keep-* "
                         "option, or snapshot ids")
    with repo.lock(exclusive=True):
        holds = load_holds(repo)
        if snapshot_ids:
            snaps = []
            for selector in snapshot_ids:
                snap = repo.find_snapshot(selector)
                if snap.id not in {s.id for s in snaps}:
                    snaps.append(snap)
            refuse_if_held(holds, [s.id for s in snaps], "forget")
            decisions = [Decision(s, False, [], ()) for s in snaps]
        else:
            decisions = apply_policy(repo.snapshots(), policy, group_by=group_by,
                                     holds={i: h.reason for i, h in holds.items()})
        result = ForgetResult(decisions, holds, dry_run=dry_run)
        if dry_run:
            return result
        for d in result.to_remove:
            if d.snapshot.id in holds:  # apply_policy keeps held snapshots; this is a second guard
                raise AssertionError("a held snapshot was chosen for removal")
            repo.remove_snapshot(d.snapshot.id)
            result.removed.append(d.snapshot.id)
        args = {"snapshots": list(snapshot_ids)} if snapshot_ids else {"policy": policy.to_json(),
                                                                        "group_by": list(group_by)}
        repo.audit("forget", args, removed=[f"snapshots/{i}" for i in result.removed])
    return result
