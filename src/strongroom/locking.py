"""Repository locks: sealed objects under ``locks/``.

A backup (or restore, check) takes a shared lock; operations that delete data take an exclusive
one. Taking a lock writes it first and then re-lists, so of two racing exclusive lockers neither
proceeds. A lock is refreshed (rewritten) every REFRESH_INTERVAL seconds; one not refreshed for
STALE_AFTER seconds, or whose process is gone on this very host, is stale and ignored.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import threading
import weakref
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterator

from strongroom.crypto import sealed
from strongroom.errors import (AccessDenied, IntegrityError, ObjectNotFound, RepositoryLocked, StrongroomError,
                               UnsupportedFormat)

if TYPE_CHECKING:
    from strongroom.repository import Repository

REFRESH_INTERVAL = 300
STALE_AFTER = 1800


@dataclass
class LockInfo:
    hostname: str
    pid: int
    username: str
    time: str
    exclusive: bool
    name: str = ""

    def age_seconds(self, now: datetime) -> float:
        return (now - datetime.fromisoformat(self.time)).total_seconds()

    def is_stale(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(timezone.utc)
        if self.age_seconds(now) > STALE_AFTER:
            return True
        return self.hostname == socket.gethostname() and (self.pid <= 0 or not _pid_alive(self.pid))

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return f"{kind} lock by pid {self.pid} on {self.hostname} ({self.username}) since {self.time[:19]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Locks taken and not yet released. Python may raise an interrupt between two statements, e.g.
#: after ``repo.lock()`` returned but before the ``with`` block that releases it began; the exit
#: hook below removes such a lock rather than leave it to go stale.
_HELD: weakref.WeakSet[Lock] = weakref.WeakSet()  # a held lock is referenced by its refresh thread


@atexit.register
def _release_held_locks() -> None:
    for lock in list(_HELD):
        lock._stop.set()
        try:
            lock._delete_quietly()
        except BaseException:  # noqa: BLE001 - the process is ending: the lock goes stale instead
            pass


def list_locks(repo: Repository) -> Iterator[LockInfo]:
    for name, _ in repo.storage.list("locks"):
        try:
            data = repo.storage.load(name)
            magic = sealed.magic_of(data, (sealed.MAGIC_LOCK_SHARED, sealed.MAGIC_LOCK))
            info = _parse_lock(sealed.unseal(repo.master, magic, data, name), name)
        except ObjectNotFound:
            continue  # released while we listed
        except (AccessDenied, IntegrityError, UnsupportedFormat, ValueError, KeyError, TypeError):
            # Unreadable lock (another repository key kind, or damage): treat as held and fresh
            # would block forever; treat it as stale instead, but keep it for `unlock` to remove.
            yield LockInfo("?", 0, "?", "1970-01-01T00:00:00+00:00", True, name=name)
            continue
        yield info


def _parse_lock(payload: bytes, name: str) -> LockInfo:
    doc = json.loads(payload)
    info = LockInfo(**{k: doc[k] for k in ("hostname", "pid", "username", "time", "exclusive")}, name=name)
    if (not isinstance(info.hostname, str) or not isinstance(info.username, str) or type(info.pid) is not int
            or info.pid <= 0 or not isinstance(info.exclusive, bool)):
        raise ValueError("lock fields have the wrong types")
    if datetime.fromisoformat(info.time).utcoffset() is None:
        raise ValueError("lock time has no UTC offset")
    return info


class Lock:
    def __init__(self, repo: Repository, exclusive: bool) -> None:
        self._repo = repo
        self.exclusive = exclusive
        self.name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, name: str) -> None:
        info = LockInfo(socket.gethostname(), os.getpid(), self._repo.username, datetime.now(timezone.utc).isoformat(),
                        self.exclusive)
        doc = asdict(info)
        del doc["name"]
        # Shared magic (spec §16.2): write-only keys must see every lock, and full keys theirs.
        data = sealed.seal(self._repo.master, sealed.MAGIC_LOCK_SHARED, json.dumps(doc).encode())
        self._repo.storage.store(name, data)

    def _conflicts(self) -> list[LockInfo]:
        now = datetime.now(timezone.utc)
        return [lk for lk in list_locks(self._repo)
                if lk.name != self.name and (self.exclusive or lk.exclusive) and not lk.is_stale(now)]

    def acquire(self) -> Lock:
        # Everything from the first look to the refresh thread running is one unit: an interrupt
        # (Ctrl-C, SIGTERM) landing anywhere in it, even while the thread starts, removes the lock.
        try:
            conflicts = self._conflicts()
            if not conflicts:
                # Named before it is written, so that an interrupt arriving from here on removes it.
                self.name = f"locks/{secrets.token_hex(32)}"
                _HELD.add(self)
                try:
                    self._write(self.name)
                except StrongroomError as e:
                    if self.exclusive:
                        raise
                    # most likely a repository this user may only read: say what reads it
                    raise type(e)(f"{e}; commands that only read (check, restore, diff, stats, "
                                  "messages) can run with --no-lock") from None
                conflicts = self._conflicts()
            if conflicts:
                self._delete()
                raise RepositoryLocked(f"repository is locked: {conflicts[0].describe()} "
                                       "(if that process is gone, run `strongroom unlock`)")
            self._thread = threading.Thread(target=self._refresh_loop, name="lock-refresh", daemon=True)
            self._thread.start()
        except BaseException:
            self._stop.set()
            self._delete_quietly()
            raise
        return self

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL):
            try:
                new = f"locks/{secrets.token_hex(32)}"
                self._write(new)
                old, self.name = self.name, new
                self._repo.storage.delete(old)
            except StrongroomError:
                pass  # the next refresh tries again; staleness only matters after STALE_AFTER

    def _delete(self) -> None:
        if self.name:
            try:
                self._repo.storage.delete(self.name)
            except ObjectNotFound:
                pass
            self.name = ""
        _HELD.discard(self)

    def _delete_quietly(self) -> None:
        try:
            self._delete()
        except StrongroomError:  # it goes stale; the original error matters more
            self.name = ""

    def release(self) -> None:
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join()
        finally:  # an interrupt while waiting for the refresh thread must not leave the lock
            self._delete()

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_locks(repo: Repository, *, remove_all: bool = False) -> list[LockInfo]:
    repo.require_full_key("remove locks")
    removed = []
    now = datetime.now(timezone.utc)
    for lk in list_locks(repo):
        if remove_all or lk.is_stale(now):
            try:
                repo.storage.delete(lk.name)
            except ObjectNotFound:
                continue
            removed.append(lk)
    return removed
