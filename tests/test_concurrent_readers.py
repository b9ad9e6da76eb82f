"""Readers (restore, check) running while backups write see only committed snapshots: every
snapshot a reader can list restores completely and correctly, and check finds no errors (packs
stored but not yet indexed are notes)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.restore import run_restore
from strongroom.config import Config
from strongroom.repository import Repository
from strongroom.storage import LocalStorage

from conftest import PASSWORD, WEAK_KDF

VERSIONS = 4


class SlowStorage(LocalStorage):
    """Local storage whose writes take a little longer, to widen the windows between a pack, its
    index file and the snapshot."""

    def store(self, name, data):
        time.sleep(0.004)
        super().store(name, data)


def version_content(v: int) -> dict[str, bytes]:
    rnd = random.Random(v)
    out = {f"shared_{i}.bin": b"\0" + random.Random(i).randbytes(30_000) for i in range(3)}
    out.update({f"v{v}_{i}.bin": b"\0" + rnd.randbytes(25_000 + 1000 * i) for i in range(5)})
    out["chat.json"] = "\n".join(f'{{"n": {n}, "v": {v}}}' for n in range(2000)).encode()
    return out


def write_source(root: Path, content: dict[str, bytes]) -> None:
    for p in list(root.glob("*")):
        p.unlink()
    root.mkdir(exist_ok=True)
    for name, data in content.items():
        (root / name).write_bytes(data)


def test_readers_during_backups_see_only_committed_snapshots(tmp_path):
    repo_dir = tmp_path / "repo"
    source = tmp_path / "src"
    Repository.init(LocalStorage(repo_dir), PASSWORD, kdf=WEAK_KDF, config=Config(pack_size=32 * 1024),
                    cache_root=str(tmp_path / "c0")).close()
    done = threading.Event()
    writer_errors: list[BaseException] = []

    def writer() -> None:
        try:
            with Repository.open(SlowStorage(repo_dir), PASSWORD, cache_root=str(tmp_path / "cw")) as repo:
                for v in range(VERSIONS):
                    write_source(source, version_content(v))
                    run_backup(repo, BackupOptions(paths=[str(source)], tags=[f"v{v}"]))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            writer_errors.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen: set[str] = set()
    checks = restores = 0
    try:
        while True:
            finished = done.is_set()
            # a fresh reader each round, with its own cache, as a separate process would be
            with Repository.open(LocalStorage(repo_dir), PASSWORD, cache_root=str(tmp_path / f"cr{checks}")) as repo:
                result = run_check(repo, read_data=True)
                assert result.ok, result.errors
                assert all("not in any index" in n for n in result.notes), result.notes
                checks += 1
                for snap in repo.snapshots():
                    if snap.id in seen:
                        continue
                    (tag,) = snap.tags
                    target = tmp_path / f"out-{snap.short_id}"
                    restored = run_restore(repo, snap, str(target))
                    assert restored.errors == []
                    base = target / str(source).lstrip("/")
                    got = {p.name: p.read_bytes() for p in base.iterdir()}
                    assert got == version_content(int(tag[1:])), tag
                    seen.add(snap.id)
                    restores += 1
            if finished:
                break
    finally:
        thread.join()
    assert writer_errors == []
    assert restores == VERSIONS and checks >= 2
