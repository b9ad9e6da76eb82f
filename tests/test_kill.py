"""``kill -9`` during a backup: the repository stays consistent and nothing committed is lost.

Each run changes the source, starts ``strongroom backup`` in a subprocess and SIGKILLs it at a
random moment (reproducible from the run's seed, which every assertion message shows). Then:
``check`` exits 0 (packs left unindexed by the kill are reported as notes, not errors), every
snapshot committed so far restores byte-identically, ``unlock`` removes the dead process's
lock, and a new backup completes, reuses the packs the killed one had completed, and restores
to the source.

The repository's pack size is 16 MiB, so the source holds ~45 MB to give several packs per backup
and make "some packs stored, no index or snapshot yet" a likely state at the kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import strongroom
from strongroom.errors import EXIT_OK

from conftest import WEAK_KDF_ARGS, strongroom_command

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(strongroom.__file__)))

BINARY_FILES = 5
BINARY_SIZE = 6 << 20  # 30 MiB of incompressible data ...
JSON_FILES = 10  # ... and ~14 MB of chat-like JSON
MESSAGES_PER_JSON = 12_000

DEFAULT_SEEDS = [101, 202, 303]
SLOW_SEEDS = list(range(1000, 1012))

UNINDEXED_NOTE = "not in any index"
VOCABULARY = ("backup", "restore", "pack", "index", "snapshot", "kill", "chat", "export", "meeting", "notes",
              "tomorrow", "deadline", "thanks", "please", "review", "merged")


# -- helpers -------------------------------------------------------------------------------------


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.pop("STRONGROOM_DEBUG", None)
    return env


def run(args: list[str], env: dict[str, str], context: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(strongroom_command() + args, env=subprocess_env(env), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    assert "Traceback" not in proc.stderr, f"{context}strongroom {args}: traceback:\n{proc.stderr}"
    assert proc.returncode == EXIT_OK, f"{context}strongroom {args} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def run_json(args: list[str], env: dict[str, str], context: str = ""):
    return json.loads(run([*args, "--json"], env, context).stdout)


def stored_files(repo_path: Path, folder: str) -> dict[str, int]:
    """Complete objects in a repository folder (temporary files skipped): name -> size."""
    return {p.name: p.stat().st_size for p in (repo_path / folder).rglob("*")
            if p.is_file() and ".tmp-" not in p.name}


def digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 for every file, "dir" for every folder."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def write_generation(src: Path, rnd: random.Random, generation: int) -> None:
    """Make the source for one generation: new binary data, some JSON changed, one file renamed."""
    src.mkdir(exist_ok=True)
    (src / "media").mkdir(exist_ok=True)
    (src / "chats").mkdir(exist_ok=True)
    for i in range(BINARY_FILES):  # all new data: every generation's backup has packs to write
        (src / "media" / f"attachment{i}.bin").write_bytes(rnd.randbytes(BINARY_SIZE))
    for i in range(JSON_FILES):
        path = src / "chats" / f"channel{i}.json"
        if generation == 0 or i % 3 == generation % 3:
            words = rnd.choices(VOCABULARY, k=8 * MESSAGES_PER_JSON)
            authors = rnd.choices(range(40), k=MESSAGES_PER_JSON)
            messages = [{"id": j, "author": f"user{authors[j]}", "gen": generation,
                         "text": f"message {j} in channel {i}: " + " ".join(words[8 * j:8 * j + 8])}
                        for j in range(MESSAGES_PER_JSON)]
            path.write_text(json.dumps(messages, indent=1))
    for old in src.glob("readme-*.txt"):
        old.unlink()
    (src / f"readme-{generation}.txt").write_text(f"generation {generation}\n")


def restored_root(target: Path, source: Path) -> Path:
    return target / str(source.resolve()).lstrip("/")


def restore_and_compare(env: dict[str, str], snapshot_id: str, target: Path, source: Path,
                        expected: dict[str, str], context: str) -> None:
    run(["restore", snapshot_id, "--target", str(target)], env, context)
    got = digest(restored_root(target, source))
    shutil.rmtree(target)  # tens of MB each
    assert got == expected, (f"{context}snapshot {snapshot_id[:8]} does not restore to what was backed up: "
                             f"missing {sorted(expected.keys() - got.keys())}, "
                             f"extra {sorted(got.keys() - expected.keys())}, "
                             f"different {sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])}")


def duplicate_blobs(repo_path: Path, env: dict[str, str], context: str,
                    seen: dict[str, dict] | None = None) -> dict[str, list[str]]:
    """Blob ids that more than one pack holds, from every index file (``cat index``). Index files
    never change (they are named by their content), so ``seen`` may keep them from earlier calls."""
    seen = {} if seen is None else seen
    where: dict[str, list[str]] = {}
    for index_name in stored_files(repo_path, "index"):
        if index_name not in seen:
            seen[index_name] = json.loads(run(["cat", "index", index_name], env, context).stdout)
        for pack in seen[index_name]["packs"]:
            for blob in pack["blobs"]:
                where.setdefault(blob["id"], []).append(pack["name"])
    return {blob: packs for blob, packs in where.items() if len(packs) > 1}


def unindexed_packs(check_doc: dict) -> list[str]:
    return [note.split(":", 1)[0].removeprefix("pack ") for note in check_doc["notes"] if UNINDEXED_NOTE in note]


def start_backup(env: dict[str, str], source: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(strongroom_command() + ["backup", "--json", *args, str(source)],
                            env=subprocess_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_until_running(proc: subprocess.Popen, repo_path: Path, locks_before: set[str], context: str) -> bool:
    """Wait until the backup holds its lock (it is past start-up); False if it already exited."""
    deadline = time.monotonic() + 60
    while not (set(stored_files(repo_path, "locks")) - locks_before):
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"{context}backup did not take its lock within 60 s"
        time.sleep(0.002)
    return True


@dataclass
class Reference:
    """A second repository that gets every generation by complete, uninterrupted backups: what a
    backup adds when it cannot reuse anything from an interrupted one."""

    env: dict[str, str]
    added: dict[int, int] = field(default_factory=dict)
    duration: dict[int, float] = field(default_factory=dict)

    def backup(self, generation: int, source: Path) -> tuple[int, float]:
        """(bytes added, seconds spent in the backup) for a complete backup of this generation."""
        if generation not in self.added:
            doc = run_json(["backup", str(source)], self.env)
            self.added[generation] = doc["summary"]["bytes_added"]
            self.duration[generation] = doc["summary"]["duration_s"]
        return self.added[generation], self.duration[generation]


@pytest.fixture
def setup(cli_env, repo_path, tmp_path):
    run(["init", *WEAK_KDF_ARGS], cli_env)
    ref_env = dict(cli_env, STRONGROOM_REPO=str(tmp_path / "reference-repo"),
                   STRONGROOM_CACHE_DIR=str(tmp_path / "reference-cache"))
    run(["init", *WEAK_KDF_ARGS], ref_env)
    return cli_env, repo_path, Reference(ref_env)


# -- the kill runs ---------------------------------------------------------------------------------


def kill_runs(seeds: list[int], env: dict[str, str], repo_path: Path, reference: Reference, tmp_path: Path) -> None:
    source = tmp_path / "source"
    expected: dict[str, dict[str, str]] = {}  # snapshot id -> digest of what it backed up
    index_docs: dict[str, dict] = {}
    for generation, seed in enumerate(seeds):
        rnd = random.Random(seed)
        context = f"[seed {seed}, generation {generation}] "
        write_generation(source, rnd, generation)
        want = digest(source)
        reference_added, reference_duration = reference.backup(generation, source)

        snapshots_before = set(stored_files(repo_path, "snapshots"))
        packs_before = set(stored_files(repo_path, "data"))
        index_before = set(stored_files(repo_path, "index"))
        locks_before = set(stored_files(repo_path, "locks"))
        # Kill 0.05-1.0 s after the backup took its lock, but within about how long a complete backup
        # of this generation takes (on a fast machine that is less than 1 s): kills that land after
        # the end teach nothing.
        delay = rnd.uniform(0.05, max(0.1, min(1.0, 1.1 * reference_duration)))
        context += f"kill after {delay:.3f} s (a complete backup takes {reference_duration:.3f} s): "

        proc = start_backup(env, source)
        try:
            if wait_until_running(proc, repo_path, locks_before, context):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = err.decode(errors="replace")
        assert proc.returncode in (-signal.SIGKILL, EXIT_OK), f"{context}backup exited {proc.returncode}:\n{err}"
        completed = proc.returncode == EXIT_OK
        assert "Traceback" not in err, context + err

        new_snapshots = set(stored_files(repo_path, "snapshots")) - snapshots_before
        assert len(new_snapshots) <= 1, context + str(new_snapshots)
        if completed:
            assert len(new_snapshots) == 1, f"{context}backup exited 0 without a snapshot"
        for snap in new_snapshots:
            expected[snap] = want

        # check: no errors; packs stored by the killed backup but never indexed are notes
        check = run_json(["check"], env, context)
        assert check["ok"] is True and check["errors"] == [], f"{context}check after the kill: {check['errors']}"
        assert all(UNINDEXED_NOTE in note for note in check["notes"]), context + str(check["notes"])
        orphans = unindexed_packs(check)
        assert set(orphans) <= set(stored_files(repo_path, "data")) - packs_before, context + str(orphans)
        if completed or new_snapshots:
            assert orphans == [], f"{context}a committed backup left unindexed packs {orphans}"
        sizes = stored_files(repo_path, "data")
        # packs the killed backup completed (indexed or not: an index file may have made it too)
        stored_by_killed = set(sizes) - packs_before
        reusable_bytes = sum(sizes[p] for p in stored_by_killed)
        new_index_files = set(stored_files(repo_path, "index")) - index_before
        assert check["snapshots"] == len(expected), context

        # the dead process's lock is stale: `unlock` removes it (a live-looking lock would block nothing
        # here, as backups take shared locks, but it must not stay forever)
        unlock = run(["unlock"], env, context)
        assert stored_files(repo_path, "locks") == {}, f"{context}locks left after unlock: {unlock.stdout}"
        if not new_snapshots:  # killed before it could release its lock
            assert unlock.stdout.startswith("removed 1 lock(s)"), context + unlock.stdout

        # every snapshot committed so far restores byte-identically (in long runs: the new ones and a
        # few older ones each time; all of them at the end)
        older = sorted(expected.keys() - new_snapshots)
        to_restore = sorted(new_snapshots) + (older if len(older) <= 6 else rnd.sample(older, 3))
        for snap in to_restore:
            restore_and_compare(env, snap, tmp_path / f"restore-{generation}-{snap[:8]}", source, expected[snap],
                                context)

        # a new backup completes, reuses the killed backup's complete packs, and restores to the source
        doc = run_json(["backup", str(source)], env, context)
        added = doc["summary"]["bytes_added"]
        snap = doc["snapshot"]["id"]
        expected[snap] = want
        restore_and_compare(env, snap, tmp_path / f"restore-{generation}-final", source, want, context)
        after = run_json(["check"], env, context)
        assert after["ok"] is True and after["notes"] == [], \
            f"{context}packs still unindexed after the next backup: {after['notes']}"
        assert set(orphans) <= set(stored_files(repo_path, "data")), context
        print(f"{context}exit {proc.returncode}, snapshot committed: {bool(new_snapshots)}, "
              f"packs completed: {len(stored_by_killed)} ({reusable_bytes} bytes, {len(orphans)} unindexed), "
              f"index files: {len(new_index_files)}; next backup added {added} (a full one: {reference_added})")
        # (byte counts of the two repositories differ a little: tree blobs hold other ids and times)
        tolerance = 0.01 * reference_added
        if new_snapshots:
            assert added < tolerance, f"{context}{added} bytes added after a committed backup"
        else:
            assert added <= reference_added - 0.9 * reusable_bytes + tolerance, (
                f"{context}backup after the kill added {added} bytes; the killed one had completed "
                f"{len(stored_by_killed)} pack(s) of {reusable_bytes} bytes ({len(orphans)} unindexed), "
                f"a full backup adds {reference_added}")
            assert added >= reference_added - reusable_bytes - tolerance, \
                f"{context}{added} bytes added: less than a full backup minus what the killed one stored"
            if reusable_bytes > 2 * tolerance:
                assert added < reference_added, context
        dups = duplicate_blobs(repo_path, env, context, index_docs)
        assert dups == {}, f"{context}{len(dups)} blob(s) stored in more than one pack: {list(dups.items())[:3]}"

    # in the end, every snapshot still restores
    final = run_json(["snapshots"], env)
    assert sorted(s["id"] for s in final) == sorted(expected), f"seeds {seeds}"
    if len(expected) > 7:  # (otherwise the last run restored them all)
        for snap, digest_then in sorted(expected.items()):
            restore_and_compare(env, snap, tmp_path / f"restore-final-{snap[:8]}", source, digest_then,
                                f"[seeds {seeds}, at the end] ")
    assert run_json(["check"], env)["ok"] is True


def test_kill_during_backup(setup, tmp_path):
    env, repo_path, reference = setup
    kill_runs(DEFAULT_SEEDS, env, repo_path, reference, tmp_path)


@pytest.mark.slow
def test_kill_during_backup_many(setup, tmp_path):
    env, repo_path, reference = setup
    kill_runs(SLOW_SEEDS, env, repo_path, reference, tmp_path)


def test_kill_after_first_pack_is_reused(setup, tmp_path):
    """Deterministic: kill as soon as the first pack is stored; the next backup reuses it."""
    env, repo_path, reference = setup
    source = tmp_path / "source"
    write_generation(source, random.Random(7), 0)
    want = digest(source)
    reference_added, _ = reference.backup(0, source)

    # without the catalogue, whose early start (catalog_early) may flush the packs and write an
    # index file at any point: kills with it are test_kill_during_backup's
    proc = start_backup(env, source, "--no-catalog")
    try:
        deadline = time.monotonic() + 60
        while not stored_files(repo_path, "data"):
            assert proc.poll() is None, f"backup exited ({proc.returncode}) before storing a pack"
            assert time.monotonic() < deadline, "no pack stored within 60 s"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert stored_files(repo_path, "snapshots") == {}
    assert stored_files(repo_path, "index") == {}

    check = run_json(["check"], env)
    assert check["ok"] is True
    orphans = unindexed_packs(check)
    assert orphans and set(orphans) == set(stored_files(repo_path, "data"))
    sizes = stored_files(repo_path, "data")
    orphan_bytes = sum(sizes[p] for p in orphans)
    assert orphan_bytes >= 16 << 20  # at least one full pack

    doc = run_json(["backup", str(source)], env)
    added = doc["summary"]["bytes_added"]
    assert added < reference_added
    assert added <= reference_added - 0.9 * orphan_bytes, (added, orphan_bytes, reference_added)
    assert run_json(["check"], env)["notes"] == []
    assert duplicate_blobs(repo_path, env, "") == {}
    run(["restore", "latest", "--target", str(tmp_path / "t")], env)
    assert digest(restored_root(tmp_path / "t", source)) == want
