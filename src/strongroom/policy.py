"""Retention policies: which snapshots a `forget` keeps, and why. Pure logic, no I/O.

A policy is applied separately to each group of snapshots (by default: same host and same
paths). Within a group, snapshots are taken newest first:

- ``last N`` keeps the N newest snapshots;
- ``hourly/daily/weekly/monthly/yearly N`` keep the newest snapshot of each of the N newest
  calendar buckets that contain a snapshot (empty buckets, i.e. gaps, are not counted);
  ``-1`` means every bucket;
- ``within D`` keeps every snapshot taken at or after (newest snapshot of the group − D);
- ``tags`` keeps every snapshot carrying one of the tags;
- a snapshot under legal hold is always kept.

Calendar buckets use each snapshot's own recorded wall-clock time (the UTC offset it was taken
with), so "daily" means the day as the backed-up machine saw it, across DST changes. The hourly
bucket also includes the UTC offset, so the hour repeated when clocks go back counts twice.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Protocol

from strongroom.errors import UsageError

BUCKET_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")
GROUP_FIELDS = ("host", "paths", "tags")


class SnapshotLike(Protocol):
    id: str
    hostname: str
    paths: list[str]
    tags: list[str]

    @property
    def datetime(self) -> datetime: ...


@dataclass(frozen=True)
class Duration:
    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    _PART = re.compile(r"(\d+)([ymdh])")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """``2y6m``, ``30d``, ``1y12h``: years, months, days and hours, each at most once."""
        text = text.strip().lower()
        parts = cls._PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text or len({u for _, u in parts}) != len(parts):
            raise UsageError(f"invalid duration {text!r}: use a combination like 2y6m, 30d or 12h")
        values = {u: int(n) for n, u in parts}
        return cls(values.get("y", 0), values.get("m", 0), values.get("d", 0), values.get("h", 0))

    def before(self, moment: datetime) -> datetime:
        """``moment`` minus this duration; calendar months, the day clamped to the month's end."""
        months = moment.year * 12 + (moment.month - 1) - self.years * 12 - self.months
        year, month = divmod(months, 12)
        month += 1
        if year < 1:
            return datetime.min.replace(tzinfo=moment.tzinfo)
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day) - timedelta(days=self.days, hours=self.hours)

    def __str__(self) -> str:
        return "".join(f"{v}{u}" for v, u in zip((self.years, self.months, self.days, self.hours), "ymdh") if v) or "0d"


@dataclass
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    tags: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.last or any(getattr(self, r) for r in BUCKET_RULES) or self.within or self.tags)

    def to_json(self) -> dict:
        doc = {k: getattr(self, k) for k in ("last",) + BUCKET_RULES if getattr(self, k)}
        if self.within:
            doc["within"] = str(self.within)
        if self.tags:
            doc["tags"] = list(self.tags)
        return doc


@dataclass
class Decision:
    snapshot: SnapshotLike
    keep: bool
    reasons: list[str]  # why it is kept (empty when removed)
    group: tuple


def bucket_key(rule: str, moment: datetime) -> tuple:
    if rule == "hourly":
        return moment.year, moment.month, moment.day, moment.hour, moment.utcoffset()
    if rule == "daily":
        return moment.year, moment.month, moment.day
    if rule == "weekly":
        iso = moment.isocalendar()
        return iso[0], iso[1]
    if rule == "monthly":
        return moment.year, moment.month
    if rule == "yearly":
        return (moment.year,)
    raise ValueError(rule)


def group_key(snap: SnapshotLike, group_by: Iterable[str]) -> tuple:
    key = []
    for name in group_by:
        if name == "host":
            key.append(("host", snap.hostname))
        elif name == "paths":
            key.append(("paths", tuple(sorted(snap.paths))))
        elif name == "tags":
            key.append(("tags", tuple(sorted(snap.tags))))
        else:
            raise UsageError(f"cannot group by {name!r}: use a combination of {', '.join(GROUP_FIELDS)}")
    return tuple(key)


def parse_group_by(text: str) -> list[str]:
    fields = [f.strip() for f in text.split(",") if f.strip()]
    for f in fields:
        if f not in GROUP_FIELDS:
            raise UsageError(f"cannot group by {f!r}: use a combination of {', '.join(GROUP_FIELDS)}")
    return fields


def apply_policy(snapshots: Iterable[SnapshotLike], policy: Policy, *, group_by: Iterable[str] = ("host", "paths"),
                 holds: dict[str, str] | None = None) -> list[Decision]:
    """Decide for every snapshot; returned newest first within each group, groups in key order."""
    if policy.is_empty():
        raise UsageError("refusing an empty policy (it would remove every snapshot): give at least one --keep-* "
                         "option, or snapshot ids")
    holds = holds or {}
    group_by = list(group_by)
    groups: dict[tuple, list[SnapshotLike]] = {}
    for snap in snapshots:
        groups.setdefault(group_key(snap, group_by), []).append(snap)
    decisions = []
    for key in sorted(groups, key=repr):
        decisions += _decide_group(groups[key], policy, holds, key)
    return decisions


def _decide_group(snaps: list[SnapshotLike], policy: Policy, holds: dict[str, str], key: tuple) -> list[Decision]:
    snaps = sorted(snaps, key=lambda s: (s.datetime, s.id), reverse=True)
    reasons: dict[str, list[str]] = {s.id: [] for s in snaps}
    for i, snap in enumerate(snaps):
        if policy.last < 0 or i < policy.last:
            reasons[snap.id].append("last")
    for rule in BUCKET_RULES:
        wanted = getattr(policy, rule)
        if not wanted:
            continue
        seen = 0
        previous = None
        for snap in snaps:
            bucket = bucket_key(rule, snap.datetime)
            if bucket == previous:
                continue  # an older snapshot in a bucket that already has its newest kept
            previous = bucket
            if wanted < 0 or seen < wanted:
                reasons[snap.id].append(rule)
            seen += 1
    if policy.within and snaps:
        cutoff = policy.within.before(snaps[0].datetime)
        for snap in snaps:
            if snap.datetime >= cutoff:
                reasons[snap.id].append(f"within {policy.within}")
    if policy.tags:
        for snap in snaps:
            matched = sorted(set(policy.tags) & set(snap.tags))
            if matched:
                reasons[snap.id].append("tag " + ",".join(matched))
    for snap in snaps:
        if snap.id in holds:
            reasons[snap.id].append(f"legal hold: {holds[snap.id]}")
    return [Decision(s, bool(reasons[s.id]), reasons[s.id], key) for s in snaps]
