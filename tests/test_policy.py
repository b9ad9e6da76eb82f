"""Retention policy against tables of synthetic snapshot times."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest

from strongroom.errors import UsageError
from strongroom.policy import Duration, Policy, apply_policy, parse_group_by


@dataclass
class Snap:
    id: str
    time: str
    hostname: str = "h"
    paths: list[str] = field(default_factory=lambda: ["/data"])
    tags: list[str] = field(default_factory=list)

    @property
    def datetime(self) -> datetime:
        return datetime.fromisoformat(self.time)


def snaps(*times: str, **kw) -> list[Snap]:
    return [Snap(f"s{i:02d}", t, **kw) for i, t in enumerate(times)]


def kept(decisions) -> list[str]:
    return sorted(d.snapshot.id for d in decisions if d.keep)


def reasons(decisions) -> dict[str, list[str]]:
    return {d.snapshot.id: d.reasons for d in decisions}


def test_empty_policy_is_refused():
    with pytest.raises(UsageError):
        apply_policy(snaps("2024-01-01T00:00:00+00:00"), Policy())


def test_keep_last_counts_same_day_duplicates_separately():
    s = snaps("2024-03-01T10:00:00+00:00", "2024-03-01T11:00:00+00:00", "2024-03-01T12:00:00+00:00",
              "2024-03-02T09:00:00+00:00")
    d = apply_policy(s, Policy(last=2))
    assert kept(d) == ["s02", "s03"]
    assert reasons(d)["s03"] == ["last"] and reasons(d)["s00"] == []


def test_keep_daily_keeps_the_newest_of_each_day():
    s = snaps("2024-03-01T08:00:00+00:00", "2024-03-01T20:00:00+00:00",  # same day: s01 wins
              "2024-03-02T08:00:00+00:00", "2024-03-03T08:00:00+00:00", "2024-03-03T09:00:00+00:00")
    assert kept(apply_policy(s, Policy(daily=3))) == ["s01", "s02", "s04"]
    assert kept(apply_policy(s, Policy(daily=2))) == ["s02", "s04"]
    assert kept(apply_policy(s, Policy(daily=-1))) == ["s01", "s02", "s04"]


def test_gaps_do_not_consume_buckets():
    # Backups on Jan 1, Jan 10 and Feb 20: three daily buckets with a snapshot, however far apart.
    s = snaps("2024-01-01T12:00:00+00:00", "2024-01-10T12:00:00+00:00", "2024-02-20T12:00:00+00:00")
    assert kept(apply_policy(s, Policy(daily=3))) == ["s00", "s01", "s02"]
    assert kept(apply_policy(s, Policy(daily=2))) == ["s01", "s02"]


def test_month_and_year_boundaries():
    s = snaps("2023-12-31T23:30:00+00:00", "2024-01-01T00:30:00+00:00", "2024-01-31T23:59:59+00:00",
              "2024-02-01T00:00:00+00:00", "2024-02-29T12:00:00+00:00")
    d = apply_policy(s, Policy(monthly=2))
    assert kept(d) == ["s02", "s04"]  # newest of February, newest of January
    d = apply_policy(s, Policy(monthly=3))
    assert kept(d) == ["s00", "s02", "s04"]
    d = apply_policy(s, Policy(yearly=5))
    assert kept(d) == ["s00", "s04"]
    assert reasons(d) == {"s04": ["yearly"], "s03": [], "s02": [], "s01": [], "s00": ["yearly"]}


def test_weekly_uses_iso_weeks_across_the_new_year():
    # 2024-12-30 (Mon) and 2025-01-05 (Sun) are both ISO week 2025-W01; 2024-12-29 is 2024-W52.
    s = snaps("2024-12-29T12:00:00+00:00", "2024-12-30T12:00:00+00:00", "2025-01-05T12:00:00+00:00")
    assert kept(apply_policy(s, Policy(weekly=2))) == ["s00", "s02"]


def test_hourly_and_rules_combine_with_all_reasons():
    s = snaps("2024-05-01T10:05:00+00:00", "2024-05-01T10:55:00+00:00", "2024-05-01T11:10:00+00:00")
    d = apply_policy(s, Policy(last=1, hourly=2, daily=1))
    assert kept(d) == ["s01", "s02"]
    assert reasons(d)["s02"] == ["last", "hourly", "daily"]
    assert reasons(d)["s01"] == ["hourly"]


def test_daily_follows_the_recorded_local_day_across_dst():
    # Europe/Berlin: 00:30 local every night, across the spring change (31 March 2024).
    s = snaps("2024-03-30T00:30:00+01:00", "2024-03-31T00:30:00+01:00", "2024-04-01T00:30:00+02:00",
              # and a second run on April 1st, in UTC still March 31st:
              "2024-04-01T01:45:00+02:00")
    # In UTC, s02 (22:30 UTC on March 31) would share a day with s01; by local day it does not.
    assert kept(apply_policy(s, Policy(daily=3))) == ["s00", "s01", "s03"]
    assert kept(apply_policy(s, Policy(daily=2))) == ["s01", "s03"]


def test_repeated_hour_at_fall_back_counts_as_two_hours():
    # 27 October 2024, Berlin: 02:00-03:00 happens twice (+02:00, then +01:00).
    s = snaps("2024-10-27T02:10:00+02:00", "2024-10-27T02:40:00+02:00", "2024-10-27T02:10:00+01:00")
    assert kept(apply_policy(s, Policy(hourly=2))) == ["s01", "s02"]
    assert kept(apply_policy(s, Policy(daily=1))) == ["s02"]


@pytest.mark.parametrize("text,expected", [
    ("2y6m", Duration(2, 6, 0, 0)), ("30d", Duration(0, 0, 30, 0)), ("1y12h", Duration(1, 0, 0, 12)),
    ("5H", Duration(0, 0, 0, 5)),
])
def test_duration_parse(text, expected):
    assert Duration.parse(text) == expected


@pytest.mark.parametrize("text", ["", "2", "y", "1y1y", "2w", "-1d", "1.5d", "1d 2h"])
def test_duration_parse_rejects(text):
    with pytest.raises(UsageError):
        Duration.parse(text)


def test_duration_subtracts_calendar_months_with_clamping():
    newest = datetime.fromisoformat("2024-08-31T12:00:00+00:00")
    assert Duration.parse("6m").before(newest) == datetime.fromisoformat("2024-02-29T12:00:00+00:00")
    assert Duration.parse("2y6m").before(newest) == datetime.fromisoformat("2022-02-28T12:00:00+00:00")
    assert Duration.parse("1d2h").before(newest) == datetime.fromisoformat("2024-08-30T10:00:00+00:00")


def test_keep_within_is_measured_from_the_newest_snapshot_inclusive():
    s = snaps("2024-01-09T12:00:00+00:00",  # 1 day + 1 s before the cutoff... outside
              "2024-01-10T11:59:59+00:00",  # one second before the cutoff: outside
              "2024-01-10T12:00:00+00:00",  # exactly at the cutoff: kept
              "2024-01-20T12:00:00+00:00")  # newest
    d = apply_policy(s, Policy(within=Duration.parse("10d")))
    assert kept(d) == ["s02", "s03"]
    assert reasons(d)["s02"] == ["within 10d"]


def test_keep_within_ignores_the_current_date():
    # Old snapshots only: the window is anchored on the newest snapshot, not on today.
    s = snaps("2001-01-01T00:00:00+00:00", "2001-01-02T00:00:00+00:00")
    assert kept(apply_policy(s, Policy(within=Duration.parse("1d")))) == ["s00", "s01"]


def test_keep_tag():
    s = [Snap("a", "2024-01-01T00:00:00+00:00", tags=["monthly-export"]),
         Snap("b", "2024-01-02T00:00:00+00:00", tags=["x"]),
         Snap("c", "2024-01-03T00:00:00+00:00")]
    d = apply_policy(s, Policy(tags=["monthly-export", "audit"], last=1), group_by=[])
    assert kept(d) == ["a", "c"]
    assert reasons(d)["a"] == ["tag monthly-export"]


def test_held_snapshots_are_always_kept_with_the_reason():
    s = snaps("2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00")
    d = apply_policy(s, Policy(last=1), holds={"s00": "case 4711"})
    assert kept(d) == ["s00", "s02"]
    assert reasons(d)["s00"] == ["legal hold: case 4711"]


def test_groups_are_decided_separately():
    s = [Snap("a1", "2024-01-01T00:00:00+00:00", hostname="a"), Snap("a2", "2024-01-02T00:00:00+00:00", hostname="a"),
         Snap("b1", "2024-01-01T00:00:00+00:00", hostname="b"),
         Snap("p1", "2024-01-03T00:00:00+00:00", hostname="a", paths=["/other"])]
    assert kept(apply_policy(s, Policy(last=1))) == ["a2", "b1", "p1"]
    assert kept(apply_policy(s, Policy(last=1), group_by=["host"])) == ["b1", "p1"]
    assert kept(apply_policy(s, Policy(last=1), group_by=[])) == ["p1"]
    d = apply_policy(s, Policy(last=1), group_by=["host"])
    assert {d.snapshot.id: d.group for d in d}["a1"] == (("host", "a"),)


def test_group_by_tags_and_paths_order_does_not_matter():
    s = [Snap("x", "2024-01-01T00:00:00+00:00", paths=["/b", "/a"], tags=["t2", "t1"]),
         Snap("y", "2024-01-02T00:00:00+00:00", paths=["/a", "/b"], tags=["t1", "t2"]),
         Snap("z", "2024-01-03T00:00:00+00:00", paths=["/a", "/b"], tags=["t3"])]
    assert kept(apply_policy(s, Policy(last=1), group_by=["paths", "tags"])) == ["y", "z"]


def test_parse_group_by():
    assert parse_group_by("host,paths") == ["host", "paths"]
    assert parse_group_by("") == []
    with pytest.raises(UsageError):
        parse_group_by("host,color")
