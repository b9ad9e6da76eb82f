"""Opening a repository's key, begun before the rest of start-up.

Argon2id (64 MiB, 3 passes) is the largest fixed cost of every command, and it needs only the
password and one key file. ``KeyOpening`` checks the config's header, lists the key files, reads
the one most likely to open (the one that opened this repository here last time) and starts its
derivation in a thread; the caller imports and prepares the rest meanwhile, then calls
``open_key``. The errors are those of opening without it, in the same order: no repository
(before any derivation), an unsupported config, then a wrong password once every key file was
tried.

This module stays light (no LMDB, zstd or chunker imports): it runs before them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterator

from strongroom.crypto.keyfile import Derivation, OpenedKey, open_access_key, read_key_info
from strongroom.errors import IntegrityError, ObjectNotFound, RepositoryNotFound, UnsupportedFormat, WrongPassword
from strongroom.crypto.sealed_header import MAGIC_CONFIG, check_header
from strongroom.storage.base import Storage

CONFIG_NAME = "config"  # strongroom.config's; not imported from there, which pulls in the chunker and zstd
HINTS_FOLDER = "key-hints"


def default_cache_root() -> str:
    explicit = os.environ.get("STRONGROOM_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "strongroom")


class KeyOpening:
    """The config's bytes and the key of a repository, with the first derivation under way."""

    def __init__(self, storage: Storage, password: bytes, *, cache_root: str | None = None) -> None:
        self.storage = storage
        self.password = password
        try:
            self.config_data = storage.load(CONFIG_NAME)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no repository at {storage.url} (run `strongroom init` to create one)") from None
        check_header(self.config_data, MAGIC_CONFIG, "config")
        # Which key file opened this repository last time: tried first, so that with several key
        # files (a write-only key beside the full one, one per admin) the usual case derives once.
        self._hint_path = os.path.join(cache_root or default_cache_root(), HINTS_FOLDER,
                                       hashlib.sha256(storage.url.encode()).hexdigest()[:32])
        self._hint = self._read_hint()
        names = sorted(name for name, _ in storage.list("keys"))
        self.key_names = sorted(names, key=lambda name: name != self._hint)  # stable: the hint first
        self._first = self._start(self.key_names[0]) if self.key_names else None

    def _start(self, name: str) -> tuple[str, bytes, Derivation] | None:
        try:
            data = self.storage.load(name)
            _, params, salt, _ = read_key_info(data, name)
        except (IntegrityError, UnsupportedFormat, ObjectNotFound):
            return None  # open_key meets it again and treats it as it always does
        return name, data, Derivation(params, self.password, salt)

    def open_key(self) -> tuple[str, OpenedKey]:
        """(key file name, opened key) of the first key file the password opens; waits for the
        derivation started early. Raises WrongPassword when none does."""
        for name, opened in self.opened_keys():
            self.accepted(name)
            return name, opened
        raise AssertionError("opened_keys raises WrongPassword when no key opens")

    def accepted(self, name: str) -> None:
        """``name`` opened the repository: try it first next time (when there are several)."""
        if name != self._hint and len(self.key_names) > 1:
            self._write_hint(name)

    def opened_keys(self) -> Iterator[tuple[str, OpenedKey]]:
        """(key file name, opened key) of each key file the password opens, in order (the one that
        opened last time first), each derived once; WrongPassword if none does. A caller that
        finds a key is not this repository's (a key file copied from another repository) asks
        for the next one."""
        unreadable, opened_any = [], False
        for name in self.key_names:
            derivation = None
            if self._first is not None and self._first[0] == name:
                _, data, derivation = self._first
            else:
                try:
                    data = self.storage.load(name)
                except ObjectNotFound:
                    continue  # removed since it was listed (key remove, key passwd)
            try:
                opened = open_access_key(data, self.password, name, derivation=derivation)
            except (IntegrityError, UnsupportedFormat) as e:
                unreadable.append(str(e))  # one damaged key file must not lock out the others
                continue
            if opened is not None:
                opened_any = True
                yield name, opened
        if opened_any:
            return
        detail = f" ({len(unreadable)} key file(s) unreadable: {unreadable[0]})" if unreadable else ""
        raise WrongPassword(f"wrong password: no key in the repository opens with it{detail}")

    def _read_hint(self) -> str | None:
        try:
            with open(self._hint_path, encoding="utf-8") as f:
                return f.read(200).strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def _write_hint(self, name: str) -> None:
        """Best effort: the hint only orders the attempts, so a cache that cannot be written costs
        at most extra derivations, never an error."""
        try:
            os.makedirs(os.path.dirname(self._hint_path), exist_ok=True)
            temporary = f"{self._hint_path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as f:
                f.write(name + "\n")
            os.replace(temporary, self._hint_path)
        except OSError:
            pass
