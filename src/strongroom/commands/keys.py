"""Key use cases: list, add (full or write-only), remove, change a passphrase.

Every key of a repository opens the same master secret (full) or holds material derived from it
(write-only), so adding a key never re-encrypts data, and removing one only deletes its file.
Every change is recorded in the audit log.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from strongroom.crypto.keyfile import (KdfParams, KeyInfo, create_key_file, create_writer_key_file, open_access_key,
                                      read_key_info)
from strongroom.crypto.publickey import WriterKey
from strongroom.crypto.signing import KIND_WRITE_ONLY, public_of
from strongroom.errors import IntegrityError, ObjectNotFound, UnsupportedFormat, UsageError
from strongroom.repository import Repository, current_username, object_name


@dataclass
class KeyRow:
    id: str  # the key file's content hash, its name under keys/
    kind: str  # "full", "write-only", or "unreadable"
    hostname: str
    username: str
    created: str
    in_use: bool

    def to_json(self) -> dict:
        return asdict(self)


def list_keys(repo: Repository) -> list[KeyRow]:
    rows = []
    for name, _ in repo.storage.list("keys"):
        key_id = name.rsplit("/", 1)[1]
        try:
            info, _, _, _ = read_key_info(repo.storage.load(name), name)
            rows.append(KeyRow(key_id, info.kind, info.hostname, info.username, info.created, name == repo.key_name))
        except ObjectNotFound:
            continue
        except (IntegrityError, UnsupportedFormat):
            rows.append(KeyRow(key_id, "unreadable", "", "", "", name == repo.key_name))
    rows.sort(key=lambda r: (r.created, r.id))
    return rows


def _info(kind: str) -> KeyInfo:
    return KeyInfo(kind, datetime.now(timezone.utc).isoformat(), socket.gethostname(), current_username())


def _store(repo: Repository, data: bytes) -> str:
    name = f"keys/{object_name(data)}"
    repo.storage.store(name, data)
    return name


def _refuse_reused_passphrase(repo: Repository, password: bytes, *, besides: str = "") -> None:
    """Opening tries key files in storage order, so a passphrase must open one key only: else a
    backup host's passphrase could open a full key, or an admin's a write-only one."""
    for name, _ in repo.storage.list("keys"):
        if name == besides:
            continue
        try:
            opens = open_access_key(repo.storage.load(name), password, name) is not None
        except (IntegrityError, UnsupportedFormat, ObjectNotFound):
            continue
        if opens:
            raise UsageError(f"that passphrase already opens key {name.rsplit('/', 1)[1][:12]}; choose another")


def add_key(repo: Repository, password: bytes, kdf: KdfParams, *, write_only: bool = False) -> KeyRow:
    """Write a new key file: a new passphrase for the same master key, or a write-only key."""
    repo.require_full_key("add keys")
    _refuse_reused_passphrase(repo, password)
    seed = secrets.token_bytes(32)
    if write_only:
        writer = WriterKey.from_master(repo.master, repo.config.encode())
        certificate = repo.master.certify(KIND_WRITE_ONLY, public_of(seed))
        data = create_writer_key_file(writer, seed, certificate, password, _info("write-only"), kdf)
    else:
        data = create_key_file(repo.master, password, _info("full"), kdf, signing_seed=seed)
    name = _store(repo, data)
    kind = "write-only" if write_only else "full"
    repo.audit("key add", {"kind": kind, "key": name.rsplit("/", 1)[1]}, added=[name])
    return next(r for r in list_keys(repo) if f"keys/{r.id}" == name)


def resolve_key(repo: Repository, prefix: str) -> KeyRow:
    prefix = prefix.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(f"invalid key id {prefix!r}: use a hex id prefix from `strongroom key list`")
    matches = [r for r in list_keys(repo) if r.id.startswith(prefix)]
    if not matches:
        raise UsageError(f"no key with id {prefix}")
    if len(matches) > 1:
        raise UsageError(f"key id prefix {prefix} is ambiguous ({len(matches)} matches)")
    return matches[0]


def remove_key(repo: Repository, key_id: str) -> KeyRow:
    """Delete a key file; refuse the key in use and the last full key."""
    repo.require_full_key("remove keys")
    # Exclusive: two holders removing each other's full key at once must not both succeed.
    with repo.lock(exclusive=True):
        row = resolve_key(repo, key_id)
        if row.in_use:
            raise UsageError(f"key {row.id[:12]} is the one in use; open the repository with another key to remove it")
        if row.kind == "full" and sum(r.kind == "full" for r in list_keys(repo)) <= 1:
            raise UsageError(f"key {row.id[:12]} is the last full key; removing it would make the repository "
                             "unreadable")
        repo.storage.delete(f"keys/{row.id}")
        repo.audit("key remove", {"key": row.id, "kind": row.kind}, removed=[f"keys/{row.id}"])
    return row


def change_password(repo: Repository, password: bytes, kdf: KdfParams) -> KeyRow:
    """Re-encrypt the key in use under a new passphrase (same key, same signing key), then delete
    the old file. The new file is stored first, so a crash leaves both, never neither."""
    old = repo.key_name
    _refuse_reused_passphrase(repo, password, besides=old)
    info, _, _, _ = read_key_info(repo.storage.load(old), old)
    fresh = KeyInfo(info.kind, info.created, info.hostname, info.username)
    signer = repo.signer
    if repo.write_only:
        data = create_writer_key_file(repo.master, signer.seed, signer.info.certificate, password, fresh, kdf)
    else:
        data = create_key_file(repo.master, password, fresh, kdf, signing_seed=signer.seed)
    name = _store(repo, data)
    repo.key_name = name
    repo.storage.delete(old)
    repo.audit("key passwd", {"key": name.rsplit("/", 1)[1], "replaces": old.rsplit("/", 1)[1]},
               added=[name], removed=[old])
    return next(r for r in list_keys(repo) if f"keys/{r.id}" == name)
