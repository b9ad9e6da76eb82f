"""The demo: simulate nightly chat exports, back each one up, restore the last, verify it.

Everything lives under one work directory (sample export, repository, cache, restore), so the
demo never touches the user's own repositories or cache."""

from __future__ import annotations

import filecmp
import os
import shutil
import time
from typing import Callable

from strongroom.commands.backup import BackupOptions, run_backup
from strongroom.commands.check import run_check
from strongroom.commands.restore import run_restore
from strongroom.errors import UsageError
from strongroom.repository import Repository
from strongroom.samples import ExportParams, write_day
from strongroom.storage import LocalStorage

MARKER = ".strongroom-demo"
DEMO_PASSWORD = b"demo password (not secret)"


def _prepare(workdir: str) -> None:
    if os.path.isdir(workdir) and os.listdir(workdir) and not os.path.exists(os.path.join(workdir, MARKER)):
        raise UsageError(f"{workdir} exists and was not made by `strongroom demo`; choose another --dir")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    open(os.path.join(workdir, MARKER), "w").close()


def _tree_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def _same_tree(a: str, b: str) -> bool:
    """Whether two directory trees hold the same names and byte-identical files."""
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def run_demo(workdir: str, days: int, *, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda _: None)
    _prepare(workdir)
    export = os.path.abspath(os.path.join(workdir, "export"))
    repo_dir = os.path.join(workdir, "repo")
    started = time.monotonic()
    say(f"strongroom demo: {days} nights of a chat server's full export (Slack, Mattermost, Telegram, "
        f"Discord, WhatsApp) backed up into {repo_dir}")
    nights = []
    with Repository.init(LocalStorage(repo_dir), DEMO_PASSWORD, cache_root=os.path.join(workdir, "cache")) as repo:
        for day in range(days):
            stats = write_day(export, day, ExportParams())
            result = run_backup(repo, BackupOptions(paths=[export], tags=["nightly"]))
            s = result.summary
            nights.append({"night": day + 1, "snapshot": result.snapshot.short_id, "export_bytes": stats.bytes,
                           "messages": stats.messages, "bytes_read": s.bytes_read, "bytes_added": s.bytes_added,
                           "seconds": s.duration_s})
            say(f"  night {day + 1}: export {stats.bytes / 1e6:6.1f} MB, {stats.messages:6} messages -> "
                f"snapshot {result.snapshot.short_id}, added {s.bytes_added / 1e6:5.2f} MB in {s.duration_s:.2f} s")
        restore_dir = os.path.join(workdir, "restore")
        latest = repo.find_snapshot("latest")
        restored = run_restore(repo, latest, restore_dir)
        verified = not restored.errors and _same_tree(export, os.path.join(restore_dir, export.lstrip("/")))
        check = run_check(repo)
    logical = sum(n["export_bytes"] for n in nights)
    stored = _tree_size(repo_dir)
    report = {
        "nights": nights, "snapshots": days, "logical_bytes": logical, "repository_bytes": stored,
        "dedup_ratio": round(logical / stored, 2) if stored else None, "restored_files": restored.files,
        "verified": verified and check.ok, "check_errors": check.errors,
        "seconds": round(time.monotonic() - started, 2), "workdir": os.path.abspath(workdir),
    }
    say(f"restored snapshot {latest.short_id}: {restored.files} files, "
        f"{'byte-identical to the export' if verified else 'MISMATCH'}; check: "
        f"{'no errors' if check.ok else check.errors}")
    say(f"{days} full exports, {logical / 1e6:.1f} MB in all, stored in {stored / 1e6:.1f} MB "
        f"(x{report['dedup_ratio']} smaller), {report['seconds']:.1f} s. Repository: {repo_dir} "
        f"(password: {DEMO_PASSWORD.decode()})")
    return report
