"""`strongroom messages ...` end to end: four generated nights of five platforms' exports
(strongroom.samples: messages are added, edited and deleted every night), backed up with the
CLI, then search, diff, export and stats compared with what the export readers give for each
night read straight from disk (the oracle)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from conftest import WEAK_KDF_ARGS
from strongroom.errors import EXIT_ERROR, EXIT_USAGE
from strongroom.messages.catalog_format import text_hash
from strongroom.messages.formats import LocalExportFiles, find_exports
from strongroom.samples import ExportParams, write_day
from test_cli import ok, run, run_main

NIGHTS = 4
ALL = ["discord", "mattermost", "slack", "telegram", "whatsapp"]  # what strongroom.samples writes
PARAMS = ExportParams(seed=5, messages_per_day=300, attachment_share=0.05, edit_rate=0.05)


def read_night(folder) -> dict[tuple, object]:
    """Every message of the exports in ``folder``, by (platform, conversation, id)."""
    files = LocalExportFiles(str(folder))
    out = {}
    for reader, export in find_exports(files):
        for m in reader.messages(files, export):
            out[(m.platform, m.conversation, m.message_id)] = m
    return out


@pytest.fixture
def cli(cli_env, capsys, monkeypatch):
    """Run the CLI in-process (much cheaper than a subprocess per command); stdout on success."""
    for key in ("STRONGROOM_REPO", "STRONGROOM_PASSWORD", "STRONGROOM_CACHE_DIR"):
        monkeypatch.setenv(key, cli_env[key])

    def call(args: list[str], expect: int = 0) -> tuple[str, str]:
        code, out, err = run_main(args, capsys)
        assert code == expect, f"strongroom {args} exited {code}: {err}"
        return out, err
    return call


@pytest.fixture
def nights(cli, cli_env, tmp_path):
    ok(["init", *WEAK_KDF_ARGS], cli_env)
    src = tmp_path / "exports"
    snapshots, oracle = [], []
    for day in range(NIGHTS):
        write_day(src, day, PARAMS)
        oracle.append(read_night(src))
        doc = json.loads(cli(["backup", "--json", str(src)])[0])
        assert doc["snapshot"]["catalog"], "a snapshot of recognised exports has a catalogue"
        snapshots.append(doc["snapshot"]["id"])
    return cli, snapshots, oracle


def ident(d: dict) -> tuple:
    return d["platform"], d["conversation"], d["id"], d["author"], d["time_ms"], d["edited"], d["text"]


def ident_m(m) -> tuple:
    return m.platform, m.conversation, m.message_id, m.author, m.time_ms, m.edited, m.text


def test_search_diff_export_stats_match_the_exports(nights, tmp_path):
    env, snaps, oracle = nights
    platforms = {k[0] for k in oracle[-1]}
    assert platforms == set(ALL)

    # search: every version, with the snapshots holding it; deleted messages included
    query = "deploy"
    doc = json.loads(env(["messages", "search", query, "--json"])[0])
    expected: dict[tuple, list[str]] = {}
    for snap, night in zip(snaps, oracle):
        for m in night.values():
            if query in m.text.casefold():
                expected.setdefault(ident_m(m), []).append(snap)
    got = {ident(d): [s["id"] for s in d["snapshots"]] for d in doc["matches"]}
    assert len(doc["matches"]) == len(got)  # each version once
    assert got == expected and len(expected) > 10
    for d in doc["matches"]:
        assert d["text_hash"] == text_hash(d["text"])

    # search with filters, one snapshot
    m0 = sorted(oracle[2].values(), key=lambda m: (m.time_ms, m.message_id))[0]
    doc = json.loads(env(["messages", "search", "", "--from", m0.author, "--conversation", m0.conversation,
                         "--snapshot", snaps[2], "--json"])[0])
    want = sorted((ident_m(m) for m in oracle[2].values()
                   if m.author == m0.author and m.conversation == m0.conversation), key=lambda t: (t[4], t[0], t[1], t[2]))
    assert [ident(d) for d in doc["matches"]] == want

    # diff between consecutive nights: added, edited (old and new text), deleted
    seen = Counter()
    for i in range(NIGHTS - 1):
        a, b = oracle[i], oracle[i + 1]
        doc = json.loads(env(["messages", "diff", snaps[i], snaps[i + 1], "--json"])[0])
        got_added = {(c["platform"], c["conversation"], r["id"]) for c in doc["conversations"] for r in c["added"]}
        got_deleted = {(c["platform"], c["conversation"], r["id"]) for c in doc["conversations"] for r in c["deleted"]}
        got_edited = {(c["platform"], c["conversation"], e["after"]["id"]): (e["before"]["text"], e["after"]["text"])
                      for c in doc["conversations"] for e in c["edited"]}
        assert got_added == b.keys() - a.keys()
        assert got_deleted == a.keys() - b.keys()
        assert got_edited == {k: (a[k].text, b[k].text) for k in a.keys() & b.keys()
                              if (a[k].text, a[k].edited) != (b[k].text, b[k].edited)}
        assert doc["totals"] == {"added": len(got_added), "edited": len(got_edited), "deleted": len(got_deleted)}
        seen.update(added=len(got_added), edited=len(got_edited), deleted=len(got_deleted))
    assert seen["added"] > 100 and seen["edited"] > 5 and seen["deleted"] > 0  # the series exercises all three

    # export one conversation, as JSON lines and natively
    platform, conversation, _ = sorted(oracle[3])[0]
    lines = env(["messages", "export", snaps[3], "--conversation", conversation, "--platform", platform])[0]
    want = sorted((m for k, m in oracle[3].items() if k[:2] == (platform, conversation)),
                  key=lambda m: (m.time_ms, m.message_id))
    assert [ident(json.loads(line)) for line in lines.splitlines()] == [ident_m(m) for m in want]
    first, last = want[1].time_ms, want[-2].time_ms
    since = f"{first / 1000:.3f}"
    lines = env(["messages", "export", snaps[3], "--conversation", conversation, "--platform", platform,
                "--since", _iso(first), "--until", _iso(last)])[0]
    assert [json.loads(line)["id"] for line in lines.splitlines()] == \
        [m.message_id for m in want if first <= m.time_ms < last], since

    # stats per platform
    doc = json.loads(env(["messages", "stats", snaps[3], "--json"])[0])
    for p in doc["platforms"]:
        ms = [m for m in oracle[3].values() if m.platform == p["platform"]]
        assert (p["messages"], p["conversations"], p["authors"]) == \
            (len(ms), len({m.conversation for m in ms}), len({m.author for m in ms}))
        assert p["first"] == _iso(min(m.time_ms for m in ms)) and p["last"] == _iso(max(m.time_ms for m in ms))
    assert [p["platform"] for p in doc["platforms"]] == ALL

    # a native export reads back as the same messages
    platform, conversation, _ = sorted(k for k in oracle[1] if k[0] == "slack")[0]
    out = tmp_path / "general.zip"
    doc = json.loads(env(["messages", "export", snaps[1], "--conversation", conversation, "--platform", platform,
                         "--format", "native", "--output", str(out), "--json"])[0])
    want = sorted((m for k, m in oracle[1].items() if k[:2] == (platform, conversation)),
                  key=lambda m: (m.time_ms, m.message_id))
    assert doc["messages"] == len(want)
    from strongroom.messages.formats import ZipExportFiles
    with ZipExportFiles(str(out)) as files:
        back = [m for reader, export in find_exports(files) for m in reader.messages(files, export)]
    assert sorted((m.message_id, m.text) for m in back) == sorted((m.message_id, m.text) for m in want)


def _iso(ms: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_errors_index_and_cache_rebuild(cli, cli_env, tmp_path):
    ok(["init", *WEAK_KDF_ARGS], cli_env)
    src = tmp_path / "exports"
    write_day(src, 0, PARAMS)
    plain = json.loads(cli(["backup", "--json", "--no-catalog", str(src)])[0])["snapshot"]
    assert "catalog" not in plain

    proc = run(["messages", "stats", "deadbeef"], cli_env)  # one real process: the exit code and stderr
    assert proc.returncode == EXIT_ERROR and proc.stderr.strip() == "strongroom: no snapshot with id deadbeef"
    _, err = cli(["messages", "diff", "not-hex", plain["id"]], EXIT_USAGE)
    assert "invalid snapshot id" in err
    _, err = cli(["messages", "stats", plain["id"]], EXIT_ERROR)
    assert err.strip() == (f"strongroom: snapshot {plain['short_id']} has no message catalogue "
                           f"(run `strongroom messages index {plain['short_id']}` to build one)")
    _, err = cli(["messages", "search", "x", "--since", "yesterday"], EXIT_USAGE)
    assert "invalid --since 'yesterday'" in err
    cli(["messages", "search", "x", "--snapshot", plain["id"], "--all-snapshots"], EXIT_USAGE)

    # an uncatalogued snapshot is not searched, and the output says so
    out, err = cli(["messages", "search", "the"])
    assert "0 message(s) in 0 catalogued snapshot(s)" in out and "no message catalogue" in err

    # index it: a new snapshot id with a catalogue; then search finds its messages
    doc = json.loads(cli(["messages", "index", plain["id"], "--json"])[0])
    [indexed] = doc["indexed"]
    assert indexed["snapshot"] == plain["id"] and indexed["new_id"] != plain["id"]
    assert sorted(indexed["platforms"]) == ALL
    night = read_night(src)
    assert indexed["messages_read"] == len(night)
    snaps = json.loads(cli(["snapshots", "--json"])[0])
    assert [s["id"] for s in snaps] == [indexed["new_id"]]
    total = json.loads(cli(["messages", "stats", "latest", "--json"])[0])
    assert sum(p["messages"] for p in total["platforms"]) == len(night)
    doc = json.loads(cli(["messages", "index", "--all", "--json"])[0])
    assert doc == {"indexed": [], "already_catalogued": [indexed["new_id"]]}

    # the cache is rebuilt from the repository when deleted
    shutil.rmtree(tmp_path / "cache")
    again = json.loads(cli(["messages", "stats", "latest", "--json"])[0])
    assert again == total
    assert json.loads(cli(["check", "--read-data", "--json"])[0])["errors"] == []
