"""The repository facade: create or open a repository, read and write blobs, trees, index files
and snapshots. Commands use this; it knows nothing of the CLI.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Iterator

import blake3

from strongroom import __version__
from strongroom.compression import decompress_blob
from strongroom.config import CONFIG_NAME, Config, open_config, seal_config
from strongroom.crypto import sealed
from strongroom.crypto.aead import Cipher
from strongroom.crypto.keyfile import KdfParams, KeyInfo, create_key_file, open_key_file
from strongroom.crypto.master import MasterKey
from strongroom.errors import (IntegrityError, ObjectNotFound, RepositoryExists, RepositoryNotFound,
                               SnapshotNotFound, UnsupportedFormat, UsageError, WrongPassword)
from strongroom.index import BlobLocation, IndexCache
from strongroom.indexfile import PackRecord, open_index, seal_index
from strongroom.locking import Lock
from strongroom.pack import TREE, open_blob, pack_cipher, pack_path
from strongroom.snapshot import Snapshot
from strongroom.storage import Storage
from strongroom.tree import Node, decode_chunk_list, decode_tree

MAX_TREE_SIZE = 512 * 1024 * 1024


def default_cache_root() -> str:
    explicit = os.environ.get("STRONGROOM_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "strongroom")


def current_username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def object_name(data: bytes) -> str:
    """Content-derived name of a standalone object: the plain BLAKE3 hash of its stored bytes."""
    return blake3.blake3(data).hexdigest()


class Repository:
    def __init__(self, storage: Storage, master: MasterKey, config: Config, key_name: str,
                 cache_root: str | None = None) -> None:
        self.storage = storage
        self.master = master
        self.config = config
        self.key_name = key_name
        self.hostname = socket.gethostname()
        self.username = current_username()
        self.index = IndexCache(os.path.join(cache_root or default_cache_root(), config.id, "index"))
        self._ciphers: OrderedDict[str, Cipher] = OrderedDict()
        self._ciphers_lock = threading.Lock()
        self.damaged_index_files: list[str] = []

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
        key = create_key_file(master, password, KeyInfo("full", now, socket.gethostname(), current_username()), kdf)
        key_name = f"keys/{object_name(key)}"
        storage.store(key_name, key)
        # config last: a location counts as a repository only once its key exists.
        storage.store(CONFIG_NAME, seal_config(master, config))
        repo = cls(storage, master, config, key_name, cache_root)
        repo.sync_index()
        return repo

    @classmethod
    def open(cls, storage: Storage, password: bytes, *, cache_root: str | None = None) -> Repository:
        try:
            config_data = storage.load(CONFIG_NAME)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no repository at {storage.url} (run `strongroom init` to create one)") from None
        sealed.check_header(config_data, sealed.MAGIC_CONFIG, "config")
        unreadable = []
        for name, _ in storage.list("keys"):
            try:
                master = open_key_file(storage.load(name), password, name)
            except (IntegrityError, UnsupportedFormat) as e:
                unreadable.append(str(e))  # one damaged key file must not lock out the others
                continue
            if master is not None:
                repo = cls(storage, master, open_config(master, config_data), name, cache_root)
                repo.sync_index()
                return repo
        detail = f" ({len(unreadable)} key file(s) unreadable: {unreadable[0]})" if unreadable else ""
        raise WrongPassword(f"wrong password: no key in the repository opens with it{detail}")

    def close(self) -> None:
        self.index.close()
        self.storage.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, *, exclusive: bool = False) -> Lock:
        return Lock(self, exclusive).acquire()

    # -- index -------------------------------------------------------------------------------

    def sync_index(self) -> int:
        """Bring the local cache up to date with ``index/``; return how many files were read."""
        listed = {name.rsplit("/", 1)[1] for name, _ in self.storage.list("index")}
        known = self.index.known_index_files()
        if known - listed:  # index files were removed (by prune or repair): start over
            self.index.clear()
            known = set()
        fresh = sorted(listed - known)
        self.damaged_index_files = []
        for name in fresh:
            path = f"index/{name}"
            try:
                data = self.storage.load(path)
                if object_name(data) != name:
                    raise IntegrityError(f"{path}: content does not match its name (damaged)")
                packs, _ = open_index(self.master, data, path)
            except ObjectNotFound:
                continue  # removed while we listed
            except (IntegrityError, UnsupportedFormat) as e:
                # Skip it so the rest of the repository stays usable; `check` reports it.
                self.damaged_index_files.append(str(e))
                continue
            self.index.add_index_file(name, packs)
        return len(fresh)

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
        if location is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index (missing data)")
        return location

    def decode_blob(self, location: BlobLocation, sealed_bytes: bytes | memoryview) -> bytes:
        """Authenticate, decrypt, decompress and re-hash one blob read from its pack."""
        entry = location.entry
        what = f"blob {entry.id.hex()[:16]} in pack {location.pack[:16]}"
        payload = open_blob(self._pack_cipher(location.pack), entry, sealed_bytes, what)
        data = decompress_blob(entry.compression, payload, entry.raw_length, what, entry.dictionary)
        if self.master.blob_id(data) != entry.id:
            raise IntegrityError(f"{what}: content does not match its id")
        return data

    def load_blob(self, blob_id: bytes) -> bytes:
        location = self.locate(blob_id)
        raw = self.storage.load(pack_path(location.pack), location.entry.offset, location.entry.length)
        return self.decode_blob(location, raw)

    # -- trees -------------------------------------------------------------------------------

    def load_tree(self, tree_id: bytes) -> list[Node]:
        location = self.locate(tree_id)
        if location.entry.type != TREE:
            raise IntegrityError(f"blob {tree_id.hex()[:16]} is not a tree")
        if location.entry.raw_length > MAX_TREE_SIZE:
            raise IntegrityError(f"tree {tree_id.hex()[:16]} claims {location.entry.raw_length} bytes")
        return decode_tree(self.load_blob(tree_id), f"tree {tree_id.hex()[:16]}")

    def file_chunks(self, node: Node) -> Iterator[bytes]:
        """The chunk ids of a file node, reading chunk-list blobs as needed."""
        yield from node.content
        for list_id in node.content_lists:
            yield from decode_chunk_list(self.load_blob(list_id), f"chunk list {list_id.hex()[:16]}")

    # -- snapshots ---------------------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> str:
        snap.program_version = snap.program_version or f"strongroom {__version__}"
        data = sealed.seal(self.master, sealed.MAGIC_SNAPSHOT, snap.encode())
        snap.id = object_name(data)
        self.storage.store(f"snapshots/{snap.id}", data)
        return snap.id

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        path = f"snapshots/{snapshot_id}"
        data = self.storage.load(path)
        if object_name(data) != snapshot_id:
            raise IntegrityError(f"{path}: content does not match its name (damaged)")
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
