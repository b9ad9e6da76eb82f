"""The repository facade: create or open a repository, read and write blobs, trees, index files
and snapshots. Commands use this; it knows nothing of the CLI.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Iterator

import blake3

from strongroom import __version__
from strongroom.config import CONFIG_NAME, Config, open_config, seal_config
from strongroom.crypto import sealed
from strongroom.crypto.aead import Cipher
from strongroom.crypto import boxed
from strongroom.crypto.keyfile import KdfParams, KeyInfo, create_key_file
from strongroom.crypto.master import MasterKey
from strongroom.crypto.publickey import WriterKey
from strongroom.crypto.signing import Signer
from strongroom.dictionary import Dictionaries
from strongroom.errors import (AccessDenied, IntegrityError, ObjectNotFound, RepositoryExists, SnapshotNotFound,
                               UnsupportedFormat, UsageError)
from strongroom.index import BlobLocation, BulkLoader, IndexCache
from strongroom.indexfile import PackRecord, open_index_raw, seal_index
from strongroom.locking import Lock
from strongroom.opening import KeyOpening, default_cache_root  # noqa: F401 (default_cache_root: re-exported)
from strongroom.pack import TREE, GroupMemo, decode_entry, pack_cipher, pack_path
from strongroom.snapshot import Snapshot
from strongroom.storage import Storage
from strongroom.archives.format import MemberData, decode_layout
from strongroom.tree import ARCHIVE, DIR, FILE, Node, decode_chunk_list, decode_tree

MAX_TREE_SIZE = 512 * 1024 * 1024
RESYNC_AFTER_MISS_S = 10.0
BULK_LOAD_MIN_FILES = 8  # a cold cache reading at least this many index files loads them in bulk


def current_username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def object_name(data: bytes) -> str:
    """Content-derived name of a standalone object: the plain BLAKE3 hash of its stored bytes."""
    return blake3.blake3(data).hexdigest()


class Repository:
    _last_miss_sync = -1e9  # when a lookup miss last re-read the index (see locate)
    def __init__(self, storage: Storage, master: MasterKey | WriterKey, config: Config, key_name: str,
                 cache_root: str | None = None, signer: Signer | None = None) -> None:
        self.storage = storage
        self.master = master  # a MasterKey, or a WriterKey for a write-only key (reads raise AccessDenied)
        self.signer = signer or Signer.for_master(master, master.legacy_signing_seed())
        self.config = config
        self.key_name = key_name
        # Read without writing a lock (restic's --no-lock): for a repository this user cannot
        # write. Nothing stops a prune meanwhile from removing what is being read.
        self.lock_free = False
        self.hostname = socket.gethostname()
        self.username = current_username()
        self.cache_dir = os.path.join(cache_root or default_cache_root(), config.id)  # this repository's
        self.index = IndexCache(os.path.join(self.cache_dir, "index"))
        self._ciphers: OrderedDict[str, Cipher] = OrderedDict()
        self._ciphers_lock = threading.Lock()
        self._missing_lock = threading.Lock()
        self.damaged_index_files: list[str] = []
        self.dictionaries = Dictionaries(storage, master)  # compression dictionaries, loaded on demand

    # -- creating and opening ----------------------------------------------------------------

    @classmethod
    def init(cls, storage: Storage, password: bytes, *, config: Config | None = None,
             kdf: KdfParams = KdfParams(), cache_root: str | None = None) -> Repository:
        if storage.exists():
            raise RepositoryExists(f"a repository already exists at {storage.url}")
        storage.create()
        master = MasterKey.generate()
        now = datetime.now(timezone.utc).isoformat()
        config = config or Config()
        config.created = now
        seed = secrets.token_bytes(32)
        key = create_key_file(master, password, KeyInfo("full", now, socket.gethostname(), current_username()), kdf,
                              signing_seed=seed)
        key_name = f"keys/{object_name(key)}"
        storage.store(key_name, key)
        # config last: a location counts as a repository only once its key exists.
        sealed_config = seal_config(master, config)
        storage.store(CONFIG_NAME, sealed_config)
        # create() takes over a location an interrupted init left, so two inits racing there could
        # each remove the other's key: the one whose key or config is gone must not carry on.
        if storage.load(CONFIG_NAME) != sealed_config or not any(n == key_name for n, _ in storage.list("keys")):
            raise RepositoryExists(f"another init created a repository at {storage.url} at the same time")
        repo = cls(storage, master, config, key_name, cache_root, Signer.for_master(master, seed))
        repo.sync_index()
        repo.audit("init", {"repository": storage.url}, added=[CONFIG_NAME, key_name])
        return repo

    @classmethod
    def open(cls, storage: Storage, password: bytes, *, cache_root: str | None = None,
             opening: KeyOpening | None = None) -> Repository:
        """Open with the first key file the password opens. ``opening`` is one begun earlier
        (its key derivation running since), for this storage and password."""
        opening = opening or KeyOpening(storage, password, cache_root=cache_root)
        # Listing the index needs no key: done while the derivation runs (on S3, a round trip).
        listed = [name for name, _ in storage.list("index")]
        foreign = []  # key files the password opens whose key does not open this config
        for name, opened in opening.opened_keys():
            key = opened.key
            try:
                # A write-only key cannot open the config; its key file carries a copy of the payload.
                config = Config.decode(key.config_payload) if key.write_only else open_config(key, opening.config_data)
            except IntegrityError:
                foreign.append(name)
                continue
            break
        else:
            raise IntegrityError(f"config: cannot be opened by the key file(s) the password opens ({', '.join(foreign)}): "
                                 "the config is damaged, or those keys belong to another repository")
        opening.accepted(name)
        repo = cls(storage, key, config, name, cache_root, opened.signer)
        repo.sync_index(listed=listed)
        return repo

    def close(self) -> None:
        self.index.close()
        self.storage.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def write_only(self) -> bool:
        return self.master.write_only

    @property
    def key_id(self) -> str:
        """The id of the key file in use (its content hash), as `key list` shows it."""
        return self.key_name.rsplit("/", 1)[1]

    def require_full_key(self, action: str) -> None:
        if self.master.write_only:
            raise AccessDenied(f"a write-only key cannot {action}; use a full key")

    def lock(self, *, exclusive: bool = False) -> Lock | contextlib.nullcontext:
        # Every operation that deletes takes the exclusive lock: refusing it here keeps write-only
        # keys away from forget, prune and anything added later that removes data.
        if exclusive:
            self.require_full_key("delete or rewrite anything (an exclusive lock)")
        if self.lock_free:  # `--no-lock`, offered only by commands that read
            if exclusive:
                raise UsageError("--no-lock is for commands that only read; this one needs the exclusive lock")
            return contextlib.nullcontext()
        return Lock(self, exclusive).acquire()

    def audit(self, command: str, args: dict | None = None, *, added: list[str] = (), removed: list[str] = (),
              result: str = "ok") -> str:
        """Append a signed entry to the audit log (see strongroom.audit); return its name."""
        from strongroom.audit import append_entry  # audit builds on this module
        return append_entry(self, command, args or {}, added=list(added), removed=list(removed), result=result)

    # -- index -------------------------------------------------------------------------------

    def sync_index(self, *, listed: list[str] | None = None) -> int:
        """Bring the local cache up to date with ``index/`` (or with ``listed``, its listing taken
        just before); return how many files were read."""
        if listed is None:
            listed = [name for name, _ in self.storage.list("index")]
        listed = {name.rsplit("/", 1)[1] for name in listed}
        known = self.index.known_index_files()
        if known - listed:  # index files were removed (by prune or repair): start over
            self.index.clear()
            self.index.set_missing_packs(())  # index files changed: which packs are lost is found anew
            known = set()
        fresh = sorted(listed - known)
        self.damaged_index_files = []
        # A rebuild from nothing sorts and appends (much faster for millions of blobs).
        loader = self.index.bulk_loader() if not known and len(fresh) >= BULK_LOAD_MIN_FILES else None
        try:
            for name in fresh:
                self._read_index_file(name, loader)
            if loader is not None:
                loader.finish()
        finally:
            if loader is not None:
                loader.close()
        return len(fresh)

    def _read_index_file(self, name: str, loader: BulkLoader | None) -> None:
        path = f"index/{name}"
        try:
            data = self.storage.load(path)
            if object_name(data) != name:
                raise IntegrityError(f"{path}: content does not match its name (damaged)")
            packs, _ = open_index_raw(self.master, data, path)
        except ObjectNotFound:
            return  # removed while we listed
        except AccessDenied:
            return  # an original (SRIX) index file: a write-only key cannot read it
        except (IntegrityError, UnsupportedFormat) as e:
            # Skip it so the rest of the repository stays usable; `check` reports it.
            self.damaged_index_files.append(str(e))
            return
        if loader is not None:
            loader.add(name, packs)
        else:
            self.index.add_index_file_raw(name, packs)

    def save_index(self, packs: list[PackRecord]) -> str:
        data = seal_index(self.master, packs)
        name = object_name(data)
        self.storage.store(f"index/{name}", data)
        self.index.add_index_file(name, packs)
        return name

    def store_pack(self, name: str, data: bytes) -> None:
        self.storage.store(pack_path(name), data)

    # -- blobs -------------------------------------------------------------------------------

    def _pack_cipher(self, pack: str) -> Cipher:
        with self._ciphers_lock:
            cipher = self._ciphers.get(pack)
            if cipher is not None:
                self._ciphers.move_to_end(pack)
                return cipher
        info = self.index.pack_info(pack)
        if info is None:
            raise IntegrityError(f"pack {pack[:16]} is not in the index")
        cipher = pack_cipher(self.master, info[1], f"pack {pack[:16]}")
        with self._ciphers_lock:
            self._ciphers[pack] = cipher
            if len(self._ciphers) > 256:
                self._ciphers.popitem(last=False)
        return cipher

    def locate(self, blob_id: bytes) -> BlobLocation:
        location = self.index.lookup(blob_id)
        if location is None and time.monotonic() - self._last_miss_sync > RESYNC_AFTER_MISS_S:
            self._last_miss_sync = time.monotonic()
            # Written by a backup that finished after we opened the repository? Look once more
            # (rate-limited, so a damaged repository with many missing blobs stays fast to read).
            self.sync_index()
            location = self.index.lookup(blob_id)
        if location is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index (missing data)")
        return location

    def decode_blob(self, location: BlobLocation, sealed_bytes: bytes | memoryview,
                    memo: GroupMemo | None = None) -> bytes:
        """Authenticate, decrypt, decompress and re-hash one blob read from its pack (a group
        member: its group's ciphertext, decoded once for consecutive members with ``memo``)."""
        entry = location.entry
        what = f"blob {entry.id.hex()[:16]} in pack {location.pack[:16]}"
        return decode_entry(self._pack_cipher(location.pack), entry, sealed_bytes, what, self.dictionaries.get,
                            self.master.blob_id, memo, location.pack)[1]

    def load_blob(self, blob_id: bytes) -> bytes:
        return self.read_located(self.locate(blob_id))

    def read_located(self, location: BlobLocation, memo: GroupMemo | None = None) -> bytes:
        """Read, authenticate and decode a blob; if its pack has vanished, use another copy."""
        entry = location.entry
        try:
            raw = self.storage.load(pack_path(location.pack), entry.offset, entry.length)
        except ObjectNotFound:
            self.forget_missing_packs({location.pack})
            location = self.locate(entry.id)  # another pack may hold it (e.g. a backup healed it)
            raw = self.storage.load(pack_path(location.pack), location.entry.offset, location.entry.length)
        return self.decode_blob(location, raw, memo)

    def forget_missing_packs(self, gone: set[str], *, replace: bool = False) -> bool:
        """Mark indexed packs that storage no longer has, and rebuild the cache without them, so
        their blobs read as absent: a later backup stores them again (the repository heals) and
        readers find any other copy. ``replace`` makes ``gone`` the whole list (packs that came
        back are used again). Returns whether the cache was rebuilt."""
        with self._missing_lock:
            known = self.index.missing_packs()
            wanted = set(gone) if replace else known | set(gone)
            if wanted == known:
                return False
            self.index.set_missing_packs(wanted)
            self.index.clear()
            self.sync_index()
            return True

    # -- trees -------------------------------------------------------------------------------

    def load_tree(self, tree_id: bytes) -> list[Node]:
        location = self.locate(tree_id)
        if location.entry.type != TREE:
            raise IntegrityError(f"blob {tree_id.hex()[:16]} is not a tree")
        if location.entry.raw_length > MAX_TREE_SIZE:
            raise IntegrityError(f"tree {tree_id.hex()[:16]} claims {location.entry.raw_length} bytes")
        return decode_tree(self._load_tree_blob(tree_id, location), f"tree {tree_id.hex()[:16]}")

    def _load_tree_blob(self, tree_id: bytes, location: BlobLocation) -> bytes:
        # A remote backend may keep tree blobs in a local cache (storage/cache.py): backups read
        # the parent snapshot's trees every run, and trees are small.
        load_cached = getattr(self.storage, "load_cached_range", None)
        if load_cached is None:
            return self.load_blob(tree_id)
        entry = location.entry
        return self.decode_blob(location, load_cached(pack_path(location.pack), entry.offset, entry.length))

    def file_chunks(self, node: Node) -> Iterator[bytes]:
        """The chunk ids of a file node, reading chunk-list blobs as needed."""
        yield from node.content
        for list_id in node.content_lists:
            yield from decode_chunk_list(self.load_blob(list_id), f"chunk list {list_id.hex()[:16]}")

    def file_blobs(self, node: Node) -> Iterator[bytes]:
        """Every blob a file node references: its chunk-list blobs and all its chunks. For an
        archive node: its layout blobs and every blob they and its skeleton name; its member
        tree (``node.subtree``) is walked like a directory's by the caller."""
        if node.type == ARCHIVE:
            yield from self._archive_blobs(node)
            return
        yield from node.content
        for list_id in node.content_lists:
            yield list_id
            yield from decode_chunk_list(self.load_blob(list_id), f"chunk list {list_id.hex()[:16]}")

    def _archive_blobs(self, node: Node) -> Iterator[bytes]:
        info = node.archive
        yield from self.file_blobs(Node(b"", FILE, content=info.skeleton, content_lists=info.skeleton_lists))
        for layout_id in info.layout:
            yield layout_id
            for seg in decode_layout(self.load_blob(layout_id), f"archive layout {layout_id.hex()[:16]}"):
                if isinstance(seg, MemberData):
                    yield from self.file_blobs(Node(b"", FILE, content=seg.content, content_lists=seg.content_lists))

    def archive_all_blobs(self, node: Node) -> Iterator[bytes]:
        """file_blobs of an archive node plus its whole member tree (trees and member files)."""
        yield from self.file_blobs(node)
        pending = [node.subtree]
        while pending:
            tree_id = pending.pop()
            yield tree_id
            for member in self.load_tree(tree_id):
                if member.type == DIR:
                    pending.append(member.subtree)
                elif member.type == FILE:
                    yield from self.file_blobs(member)

    # -- snapshots ---------------------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> str:
        """Store a snapshot as a signed boxed object chained to the head of its group (§16.4)."""
        from strongroom.chain import ChainLink, group_tag, group_head  # chain builds on this module
        snap.program_version = snap.program_version or f"strongroom {__version__}"
        group = group_tag(self.master, snap.hostname, snap.paths)
        head = group_head(self, group)
        link = ChainLink(group, head.seq + 1 if head else 0, head.snapshot_id if head else None)
        data = boxed.seal_boxed(self.master.recipient_public, self.signer, boxed.MAGIC_SNAPSHOT, link.encode(),
                                snap.encode())
        snap.id = object_name(data)
        snap.chain = link
        self.storage.store(f"snapshots/{snap.id}", data)
        return snap.id

    def load_snapshot_bytes(self, snapshot_id: str) -> bytes:
        path = f"snapshots/{snapshot_id}"
        data = self.storage.load(path)
        if object_name(data) != snapshot_id:
            raise IntegrityError(f"{path}: content does not match its name (damaged)")
        return data

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        from strongroom.chain import ChainLink
        path = f"snapshots/{snapshot_id}"
        data = self.load_snapshot_bytes(snapshot_id)
        if boxed.is_boxed(data, boxed.MAGIC_SNAPSHOT):
            header, payload, signer = boxed.open_boxed(self.master, data, boxed.MAGIC_SNAPSHOT, path)
            snap = Snapshot.decode(payload, snapshot_id, path)
            snap.chain = ChainLink.decode(header, path)
            snap.signer = signer
            return snap
        self.require_full_key("read snapshots")
        return Snapshot.decode(sealed.unseal(self.master, sealed.MAGIC_SNAPSHOT, data, path), snapshot_id, path)

    def snapshot_ids(self) -> list[str]:
        return [name.rsplit("/", 1)[1] for name, _ in self.storage.list("snapshots")]

    def snapshots(self) -> list[Snapshot]:
        """All snapshots, oldest first."""
        snaps = [self.load_snapshot(i) for i in self.snapshot_ids()]
        snaps.sort(key=lambda s: (s.datetime, s.id))
        return snaps

    def find_snapshot(self, selector: str, *, hostname: str | None = None, paths: list[str] | None = None) -> Snapshot:
        """Resolve ``latest`` (optionally for one host or path set) or an unambiguous id prefix."""
        if selector == "latest":
            candidates = [s for s in self.snapshots()
                          if (hostname is None or s.hostname == hostname) and (paths is None or s.paths == paths)]
            if not candidates:
                raise SnapshotNotFound("no snapshot found" + (f" for host {hostname}" if hostname else ""))
            return candidates[-1]
        if not selector or any(c not in "0123456789abcdef" for c in selector.lower()):
            raise UsageError(f"invalid snapshot id {selector!r}: use `latest` or a hex id prefix")
        matches = [i for i in self.snapshot_ids() if i.startswith(selector.lower())]
        if not matches:
            raise SnapshotNotFound(f"no snapshot with id {selector}")
        if len(matches) > 1:
            raise UsageError(f"snapshot id prefix {selector} is ambiguous ({len(matches)} matches)")
        return self.load_snapshot(matches[0])

    # -- removal (forget, tag, prune) --------------------------------------------------------

    def remove_snapshot(self, snapshot_id: str) -> None:
        """Delete one snapshot object; its data stays until a prune."""
        try:
            self.storage.delete(f"snapshots/{snapshot_id}")
        except ObjectNotFound:
            pass  # already gone: removal is idempotent

    def stored_packs(self) -> Iterator[tuple[str, int]]:
        """(pack name, size) of every pack in storage, indexed or not."""
        for name, size in self.storage.list("data"):
            yield name.rsplit("/", 1)[1], size

    def save_rewritten_snapshot(self, snap: Snapshot, original: Snapshot) -> str:
        """Store ``snap`` as a rewrite of ``original`` (e.g. new tags): it takes the original's
        place in its group's chain (same link), so the chain stays in time order; the caller
        removes the original afterwards and records both in the audit log (§17.3)."""
        if getattr(original, "chain", None) is None:
            return self.save_snapshot(snap)  # an unchained (older format) snapshot
        snap.program_version = snap.program_version or f"strongroom {__version__}"
        data = boxed.seal_boxed(self.master.recipient_public, self.signer, boxed.MAGIC_SNAPSHOT,
                                original.chain.encode(), snap.encode())
        snap.id = object_name(data)
        snap.chain = original.chain
        self.storage.store(f"snapshots/{snap.id}", data)
        return snap.id

    def scratch_folder(self) -> str:
        """A folder for temporary on-disk tables (prune, stats): beside the index cache."""
        return os.path.dirname(self.index.folder())
