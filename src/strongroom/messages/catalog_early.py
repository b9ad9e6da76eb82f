"""The catalogue begun while the backup still stores files (spec §23.6).

Storing files keeps about one core busy (chunking holds the GIL); the catalogue comes after, and
its reading of changed export files is shared between two processes (catalog_parallel). So the
reading starts earlier: when a folder directly below a backed-up folder has been stored (a
nightly job's exports usually land side by side in one folder) and it holds a file an export
may be recognised by, the backup flushes what it
wrote (so the folder's trees and files can be read back), the exports in that folder are
recognised and planned as the catalogue would (catalog_build.CatalogBuilder.plan_jobs), and a
forked copy starts reading their changed files from their source files while this process
backs up the rest. At most one such copy runs at a time; folders stored meanwhile wait until it
is done, which the backup notices as it reads on (``reading``). The catalogue then counts what the copies read for the files it would read itself
(the same part key, memo key and path, on which alone a part depends) and reads or shares out
the rest; a copy still at work is helped, file by file. The catalogue is the same bytes as
without this (tests compare roots); it only finishes sooner.
"""

from __future__ import annotations

import os

from strongroom.errors import StrongroomError
from strongroom.forked import available_cores
from strongroom.messages.catalog_build import CatalogBuilder
from strongroom.messages.catalog_files import CANDIDATE_SUFFIXES
from strongroom.messages.catalog_index import MessageIndex
from strongroom.messages.catalog_parallel import PieceJob, Share
from strongroom.repository import Repository
from strongroom.writer import BlobWriter

# Each early start flushes the backup's open packs and writes an index file: a tree of many
# small folders must not start one per folder (bytes read between two starts), and a tree of
# many large folders without exports not one per folder either (starts per backup).
MIN_STORED_BETWEEN = 32 * 1024 * 1024
MAX_STARTS = 8
# The copy's lower priority while the backup stores files: it is to use what the backup leaves
# of the cores, not to slow the backup down where other work takes a core.
EARLY_NICE = 5


class EarlyCatalogue:
    """What a backup hands to its catalogue: the messages cache, opened once, and the shares
    started while it stored files."""

    # names of the files an export may be recognised by (bytes, lower case): the backup tells of a
    # stored folder only when it holds one
    suffixes = tuple(s.encode() for s in CANDIDATE_SUFFIXES)

    def __init__(self, repo: Repository, writer: BlobWriter, index: MessageIndex) -> None:
        self.index = index
        self.shares: list[Share] = []
        self._writer = writer
        # its warnings are dropped: the catalogue recognises and reads everything again and says
        # what fails then
        self._planner = CatalogBuilder(repo, writer, reuse=index.part_nodes, memos=index.memos,
                                       read_sources=True, parallel=True, verdicts=index.verdicts)
        self._waiting: list[tuple[str, bytes]] = []  # (snapshot path, tree id) of folders stored
        self._planned: list[PieceJob] = []  # too little yet to start a copy for
        self._stored_at_start = 0
        self._starts = 0
        self._off = False

    @classmethod
    def open(cls, repo: Repository, writer: BlobWriter) -> EarlyCatalogue | None:
        """One for a backup that will write a catalogue, where a forked copy can help."""
        if repo.write_only or available_cores() < 2 or not hasattr(os, "fork"):
            return None
        try:
            index = MessageIndex(repo)
        except StrongroomError:
            return None  # the catalogue says why
        return cls(repo, writer, index)

    def folder_stored(self, path: bytes, tree_id: bytes, stored: int) -> None:
        """The backup has stored the folder at ``path`` (absolute), which holds files with one of
        ``suffixes``, having read ``stored`` bytes of files so far."""
        if self._off:
            return
        self._waiting.append((os.fsdecode(path).lstrip("/"), tree_id))
        self.reading(stored)

    def reading(self, stored: int) -> None:
        """The backup has read ``stored`` bytes of files so far: start a copy on the folders
        stored since the last start, if it may now (the last copy may have finished since)."""
        if (self._off or not self._waiting or stored - self._stored_at_start < MIN_STORED_BETWEEN
                or any(s.running() for s in self.shares)):
            return
        self._stored_at_start = stored
        self._starts += 1
        self._off = self._starts >= MAX_STARTS
        waiting, self._waiting = self._waiting, []
        # (a failure to store is the backup's: it is not caught here)
        self._writer.flush(train=False)  # the folders' trees and files can be read back now
        try:
            for prefix, tree in waiting:
                self._planned += self._planner.plan_jobs(tree, prefix)
            # (None too while they are too little to fork for: they wait for the next start)
            share = Share.start(self._planner, self._planned, nice=EARLY_NICE)
        except Exception:  # noqa: BLE001 - the catalogue meets it again, and reports it
            self._off = True
            return
        if share is not None:
            self.shares.append(share)
            self._planned = []

    def close(self) -> None:
        """Stop any copy still at work and close the cache."""
        while self.shares:
            self.shares.pop().close()
        self.index.close()
