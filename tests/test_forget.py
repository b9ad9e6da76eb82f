"""forget, hold and release through the command line, and `forget --prune` end to end."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from conftest import PASSWORD
from strongroom.cli import main
from strongroom.commands.check import run_check
from strongroom.commands.hold import load_holds
from strongroom.errors import EXIT_ERROR, EXIT_USAGE
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from test_prune import _under, backup, make_repo, repo_bytes, restored, tree_bytes, write_files


def run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("STRONGROOM_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSWORD.decode())
    return tmp_path


@pytest.fixture
def dated(env):
    """One real backup, cloned into snapshots at chosen times; returns {label: id}."""
    repo = make_repo(env / "repo")
    write_files(env / "src", seed=1, count=2, size=2000)
    base = backup(repo, env / "src")
    times = {"jan1": "2024-01-01T10:00:00+00:00", "jan2": "2024-01-02T10:00:00+00:00",
             "jan3a": "2024-01-03T09:00:00+00:00", "jan3b": "2024-01-03T18:00:00+00:00"}
    ids = {}
    for label, when in times.items():
        snap = dataclasses.replace(base, time=when, id="")
        ids[label] = repo.save_snapshot(snap)
    repo.remove_snapshot(base.id)
    repo.close()
    return ids


def current_ids(env) -> set[str]:
    with Repository.open(LocalStorage(env / "repo"), PASSWORD) as repo:
        return set(repo.snapshot_ids())


def test_dry_run_shows_the_rule_that_keeps_each_snapshot(dated, env, capsys):
    code, out, err = run(["forget", "--keep-daily", "2", "--keep-last", "1", "--dry-run"], capsys)
    assert code == 0, err
    lines = {line.split()[1] if line.strip().startswith("keep") else line.split()[2]: line
             for line in out.splitlines() if line.startswith("  ")}
    assert "(last; daily)" in lines[dated["jan3b"][:8]]
    assert "(daily)" in lines[dated["jan2"][:8]]
    assert "would remove" in lines[dated["jan3a"][:8]] and "would remove" in lines[dated["jan1"][:8]]
    assert out.splitlines()[-1] == "would remove 2 snapshot(s), keeping 2"
    assert current_ids(env) == set(dated.values())


def test_forget_by_policy_json(dated, env, capsys):
    code, out, _ = run(["forget", "--keep-daily", "2", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert sorted(doc["removed"]) == sorted([dated["jan1"], dated["jan3a"]])
    by_id = {s["id"]: s for s in doc["snapshots"]}
    assert by_id[dated["jan3b"]]["reasons"] == ["daily"] and by_id[dated["jan1"]]["keep"] is False
    assert doc["policy"] == {"daily": 2}
    assert current_ids(env) == {dated["jan2"], dated["jan3b"]}


def test_empty_policy_is_refused(dated, env, capsys):
    code, _, err = run(["forget"], capsys)
    assert code == EXIT_USAGE and "empty policy" in err
    assert current_ids(env) == set(dated.values())


def test_ids_and_policy_together_are_refused(dated, env, capsys):
    code, _, err = run(["forget", dated["jan1"][:8], "--keep-last", "1"], capsys)
    assert code == EXIT_USAGE and "not both" in err


def test_forget_by_id(dated, env, capsys):
    code, out, _ = run(["forget", dated["jan1"][:10], dated["jan2"]], capsys)
    assert code == 0 and "removed 2 snapshot(s)" in out
    assert current_ids(env) == {dated["jan3a"], dated["jan3b"]}


def test_hold_protects_against_policy_and_id_until_released(dated, env, capsys):
    code, out, _ = run(["hold", dated["jan1"][:8], "--reason", "litigation 2024-17"], capsys)
    assert code == 0 and out == f"held {dated['jan1'][:8]}: litigation 2024-17\n"
    # By id: refused, and nothing else in the request is removed either.
    code, _, err = run(["forget", dated["jan1"], dated["jan2"]], capsys)
    assert code == EXIT_ERROR and "legal hold" in err and "litigation 2024-17" in err
    assert current_ids(env) == set(dated.values())
    # By policy: kept, with the reason, and listed.
    code, out, _ = run(["forget", "--keep-last", "1"], capsys)
    assert code == 0
    assert f"keep   {dated['jan1'][:8]}" in out and "legal hold: litigation 2024-17" in out
    assert "1 snapshot(s) under legal hold:" in out
    assert current_ids(env) == {dated["jan1"], dated["jan3b"]}
    code, out, _ = run(["holds", "--json"], capsys)
    assert [h["snapshot"] for h in json.loads(out)] == [dated["jan1"]]
    code, out, _ = run(["release", dated["jan1"][:8]], capsys)
    assert code == 0 and out == f"released {dated['jan1'][:8]}\n"
    code, out, _ = run(["forget", "--keep-last", "1"], capsys)
    assert current_ids(env) == {dated["jan3b"]}


def test_hold_needs_a_reason_and_an_existing_snapshot(dated, env, capsys):
    code, _, err = run(["hold", dated["jan1"][:8]], capsys)
    assert code == EXIT_USAGE
    code, _, err = run(["hold", "abcdef", "--reason", "x"], capsys)
    assert code != 0 and "no snapshot" in err


def test_a_damaged_hold_record_still_holds(dated, env, capsys):
    run(["hold", dated["jan1"], "--reason", "x"], capsys)
    path = env / "repo" / "holds" / dated["jan1"]
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with Repository.open(LocalStorage(env / "repo"), PASSWORD) as repo:
        holds = load_holds(repo)
    assert list(holds) == [dated["jan1"]] and holds[dated["jan1"]].reason.startswith("(unreadable hold record")
    run(["forget", "--keep-last", "1"], capsys)
    assert dated["jan1"] in current_ids(env)


def test_forget_prune_end_to_end(env, capsys):
    repo = make_repo(env / "repo")
    src = env / "src"
    contents = {}
    for day in range(5):
        write_files(src, seed=day, count=5, size=30_000)
        if day == 4:  # the newest keeps most files of the previous day: partly shared packs
            write_files(src, seed=3, count=4, size=30_000)
        snap = backup(repo, src)
        contents[snap.id] = tree_bytes(src)
    repo.close()
    size_before = repo_bytes(env / "repo")
    code, out, err = run(["forget", "--keep-last", "2", "--prune", "--max-unused", "5%", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["removed"]) == 3
    plan = doc["prune"]["plan"]
    assert plan["unused_bytes_after"] <= 0.05 * plan["bytes_after"]
    size_after = repo_bytes(env / "repo")
    # Three of five independent days went: at most a bit more than 2/5 of the data remains.
    assert size_after < size_before * 0.45
    with Repository.open(LocalStorage(env / "repo"), PASSWORD) as repo:
        assert run_check(repo, read_data=True).errors == []
        remaining = repo.snapshots()
        assert len(remaining) == 2
        for snap in remaining:
            assert restored(repo, snap, env, snap.short_id) == _under(contents[snap.id], env)
    code, out, _ = run(["prune", "--dry-run", "--json"], capsys)
    plan = json.loads(out)["plan"]
    assert plan["delete_packs"] == 0 and plan["unused_bytes_before"] <= 0.05 * plan["bytes_before"]
    assert os.path.isdir(env / "repo" / "data")


def test_prune_dry_run_prints_the_plan(env, capsys):
    repo = make_repo(env / "repo")
    write_files(env / "src", seed=1, count=3, size=20_000)
    first = backup(repo, env / "src")
    write_files(env / "src", seed=2, count=3, size=20_000)
    backup(repo, env / "src")
    repo.close()
    run(["forget", first.id], capsys)
    before = sorted(os.listdir(env / "repo" / "index"))
    code, out, err = run(["prune", "--dry-run"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("1 snapshot(s) reference ")
    assert lines[1].startswith("would delete 2 unused pack(s) (")  # its data pack and its tree pack
    assert lines[2] == "would repack 0 pack(s) (0 B, copying 0 B)"
    assert lines[3] == "would rewrite 1 index file(s)"
    assert lines[4].startswith("repository after prune: about ")
    assert len(lines) == 5 and sorted(os.listdir(env / "repo" / "index")) == before
    code, out, _ = run(["prune", "--max-unused", "bogus"], capsys)
    assert code == EXIT_USAGE
