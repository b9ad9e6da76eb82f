"""Index packs that were stored whole but never listed in an index file.

An interrupted backup (Ctrl-C, kill -9, power loss) can leave such packs behind: they are
complete (stored atomically, named by their hash) but no index file names them, so nothing uses
them. Before a backup, their headers are read and an index file is written for them, so the new
backup deduplicates against their blobs instead of storing them again.
"""

from __future__ import annotations

from typing import Callable

from strongroom.errors import IntegrityError, ObjectNotFound, UnsupportedFormat
from strongroom.indexfile import PackRecord
from strongroom.pack import pack_name, parse_header
from strongroom.repository import Repository


def index_orphan_packs(repo: Repository, warn: Callable[[str], None]) -> int:
    """Write one index file for every stored, unindexed, intact pack; return how many."""
    repo.sync_index()
    records = []
    indexed_present = 0
    for name, size in repo.storage.list("data"):
        pack = name.rsplit("/", 1)[1]
        if repo.index.pack_info(pack) is not None:
            indexed_present += 1
            continue
        try:
            data = repo.storage.load(name)
        except ObjectNotFound:
            continue  # removed while we listed
        try:
            if pack_name(data) != pack:
                raise IntegrityError(f"{name}: content does not match its name")
            envelope, entries = parse_header(repo.master, data, len(data), name)
        except (IntegrityError, UnsupportedFormat) as e:
            warn(f"ignoring unreadable unindexed pack: {e}")
            continue
        records.append(PackRecord(pack, len(data), envelope, entries))
    if records:
        repo.save_index(records)
    if indexed_present != repo.index.counts()[1] - len(records) or repo.index.missing_packs():
        _forget_vanished_packs(repo, warn)
    return len(records)


def _forget_vanished_packs(repo: Repository, warn: Callable[[str], None]) -> None:
    """Indexed packs that storage lost: leave them out of the cache so this backup stores their
    blobs again, wherever it meets the same content (the repository heals)."""
    stored = {name.rsplit("/", 1)[1] for name, _ in repo.storage.list("data")}
    gone = {pack for pack, _ in repo.index.iter_packs() if pack not in stored}
    gone |= {pack for pack in repo.index.missing_packs() if pack not in stored}
    if repo.forget_missing_packs(gone, replace=True) and gone:
        warn(f"{len(gone)} indexed pack(s) are missing from storage; their chunks will be stored again "
             "when backed-up content supplies them (run `strongroom check` for the affected files)")
