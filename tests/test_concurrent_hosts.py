"""Many hosts, one repository: concurrent backup processes (different --host) into the same
repository, local and S3. All succeed, deduplicate against each other, and every snapshot
checks and restores byte-identically."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import WEAK_KDF_ARGS, strongroom_command
from test_s3 import make_tree, run, tree_digest

HOSTS = ["chat-1", "chat-2", "chat-3", "chat-4"]


@pytest.fixture(params=["local", "s3"])
def repo_env(request, cli_env, tmp_path):
    env = dict(cli_env)
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        env.update(request.getfixturevalue("s3_env"))
        env["STRONGROOM_REPO"] = server.url(bucket, "shared")
    return env


def test_four_hosts_back_up_at_once(repo_env, tmp_path) -> None:
    env = repo_env
    run(env, "init", *WEAK_KDF_ARGS)
    # Every host has the same shared corpus (e.g. the same public channels) plus its own data.
    sources = {}
    for i, host in enumerate(HOSTS):
        root = tmp_path / host
        make_tree(root / "shared", files=6, size=150_000, seed=99)
        make_tree(root / "own", files=3, size=60_000, seed=i)
        sources[host] = root
    # One host first, so the shared corpus is in the index before the concurrent run.
    run(env, "backup", str(sources[HOSTS[0]]), "--host", HOSTS[0])
    before = json.loads(run(env, "snapshots", "--json").stdout)
    assert len(before) == 1

    procs = [subprocess.Popen([*strongroom_command(), "backup", str(sources[h]), "--host", h, "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for h in HOSTS]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    added = [r["summary"]["bytes_added"] for r in results]
    # The shared corpus (6 x 150 kB incompressible) is stored once: none of the concurrent backups
    # stores it again; each adds at most its own 180 kB (+ metadata).
    assert all(a < 250_000 for a in added), added

    snaps = json.loads(run(env, "snapshots", "--json").stdout)
    assert sorted(s["hostname"] for s in snaps) == sorted(HOSTS + [HOSTS[0]])
    assert "no errors" in run(env, "check", "--read-data").stdout
    for snap in snaps:
        target = tmp_path / "restore" / snap["id"][:12]
        run(env, "restore", snap["id"][:12], "--target", str(target))
        root = sources[snap["hostname"]]
        assert tree_digest(target / root.relative_to("/")) == tree_digest(root)
