"""Build a snapshot's message catalogue and store it in the repository (spec §23).

The catalogue is a tree, written like any snapshot tree: it mirrors the snapshot's paths of the
export files that hold messages, and each such file's node holds, instead of the file's bytes,
the catalogue *part* read from it (catalog_format). So every tool that walks trees (check, prune,
copy, stats, repair) handles it once the snapshot names its root, and unchanged parts, chunks and
directories are the same blobs in every snapshot.

Parts are reused without reading the export file again when their key (the file's content, its
place, and the export's context files) matches one catalogued before (the cache's ``partnodes``
table, checked against the index so a reused part's blobs all exist).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import posixpath
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, NamedTuple

import blake3

from strongroom.commands import WarningCallback, ignore_warning
from strongroom.errors import StrongroomError
from strongroom.messages.catalog_files import SubsetFiles, TreeFiles
from strongroom.messages.catalog_format import (PartHeader, chunk_marked_records, content_key, encode_record,
                                                 export_relative, member_key, memo_key, part_key)
from strongroom.messages.catalog_memo import PieceMemo, record_line
from strongroom.messages.catalog_parallel import LocalSource, PieceJob, read_piece_jobs
from strongroom.messages.catalog_sources import (LocalArchive, SourceChanged, open_regular, small_source_head,
                                                 verified_blocks)
from strongroom.messages.external_sort import ExternalSorter
from strongroom.messages.formats.common import HEAD_BYTES
from strongroom.messages.formats.segments import STATE_VERSION
from strongroom.messages.model import Export, ExportReader, Message
from strongroom.pack import DATA, TREE
from strongroom.repository import Repository
from strongroom.tree import DIR, FILE, Node, encode_tree
from strongroom.writer import BlobWriter, FileContent

# Files that describe an export rather than hold its messages (user and channel lists): every
# part of the export depends on them, so a change to one re-reads the whole export.
CONTEXT_NAMES = frozenset({"users.json", "channels.json", "groups.json", "dms.json", "mpims.json",
                           "integration_logs.json", "canvases.json", "realm.json", "attachment.json"})


@dataclass
class CatalogStats:
    exports: int = 0
    parts: int = 0
    parts_reused: int = 0
    files_read: int = 0
    sources_read: int = 0  # of files_read, read from the source files the backup just stored
    pieces_parsed: int = 0  # pieces (~ records) of changed export files parsed (spec §23.6)
    pieces_reused: int = 0  # pieces whose record lines came from the file's memo
    messages: int = 0  # in parts written this time (reused parts are not counted again)
    platforms: list[str] = field(default_factory=list)


DEFAULT_READERS: list[ExportReader] | None = None  # None: the formats package's readers (tests set others)


def find_exports(files, readers: Iterable[ExportReader] | None = None,
                 warn: WarningCallback = ignore_warning) -> list[tuple[ExportReader, Export]]:
    if readers is None:
        readers = DEFAULT_READERS
    if readers is None:
        from strongroom.messages.formats import find_exports as find_all  # the formats' own rules
        return find_all(files, warn)
    return [(r, e) for r in readers for e in r.find(files)]


def _messages(reader: ExportReader, files, export: Export, warn: WarningCallback) -> Iterator[Message]:
    """The reader's messages, with its warnings (skipped records) routed to ``warn`` if it takes one."""
    try:
        takes_warn = "warn" in inspect.signature(reader.messages).parameters
    except (TypeError, ValueError):
        takes_warn = False
    return reader.messages(files, export, warn=warn) if takes_warn else reader.messages(files, export)


MEMBERS_SHARE_TO_HASH = 4
LOCAL_ARCHIVES = 4


class _Monolithic(Exception):
    """A reader named a source that is not one of the export's files: catalogue it as a whole."""


def distinct_memo_keys(jobs: list[PieceJob], keyed: Callable[[bytes], bytes]) -> None:
    """Give files that would share a memo key (files of the same name in one-file exports of one
    platform, such as several iOS WhatsApp chats' ``_chat.txt``) each a key of its own, from its
    path in the snapshot (spec §23.6), so that their memos do not replace each other every night.
    A file without a namesake keeps the key by name, which a dated folder's next export finds."""
    count = Counter(job.memo_key for job in jobs)
    for job in jobs:
        if count[job.memo_key] > 1:
            job.memo_key = keyed(b"strongroom catalogue memo path\0" + job.memo_key
                                 + job.path.encode("utf-8", "surrogateescape"))


class _ExportPlan(NamedTuple):
    content: dict[str, bytes]  # export file -> its content key
    context: bytes  # the export's context key
    context_files: list[str]
    data_files: list[str]
    keys: dict[str, bytes]  # data file -> its part key
    reused: dict[str, tuple[list[bytes], list[bytes], int]]  # data file -> its part, from the cache
    jobs: list[PieceJob]  # data files (not reused) to read piece by piece


class CatalogBuilder:
    def __init__(self, repo: Repository, writer: BlobWriter, *, readers: Iterable[ExportReader] | None = None,
                 reuse=None, memos=None, warn: WarningCallback = ignore_warning, read_sources: bool = False,
                 parallel: bool = False, verdicts=None, early=()) -> None:
        self.repo = repo
        self.early = early  # catalog_parallel.Shares begun during the backup (catalog_early)
        self.verdicts = verdicts  # a catalog_index.HeadVerdicts, or None to read every candidate's head
        # The snapshot was just taken from this machine's files (at "/" + its paths): a changed
        # export file is read from there, if its bytes are still the ones stored (checked by the
        # node's content hash), rather than decrypted from the repository.
        self.read_sources = read_sources
        self.writer = writer
        self.readers = readers
        self.reuse = reuse  # a catalog_index.PartNodes, or None to read every export file
        self.memos = memos  # a catalog_index.MemoTable, or None to parse every piece
        self.warn = warn
        self.keyed = repo.master.blob_id
        self.stats = CatalogStats()
        self.parts: dict[str, Node] = {}  # snapshot path of the export file -> its part's node
        # files to read piece by piece, read after every export was looked at, so that they can
        # be shared out between this process and a forked one (catalog_parallel)
        self.jobs: list[PieceJob] = []
        self.parallel = parallel
        self._archives: OrderedDict[str, LocalArchive] = OrderedDict()  # zips read from their source

    def build(self, tree_id: bytes) -> bytes | None:
        """Catalogue the exports in a snapshot tree; return the catalogue's root tree id, or None
        when the tree holds no recognised export with messages."""
        self.tree = TreeFiles(self.repo, tree_id, verdicts=self.verdicts,
                              local_head=self._local_head if self.read_sources else None)
        files = self.tree
        if any(p.lower().endswith(".zip") for p in self.tree.paths()):
            from strongroom.messages.formats import expand_zips
            files = expand_zips(self.tree, self.warn)  # zipped exports are read member by member
        try:
            for reader, export in find_exports(files, self.readers, self.warn):
                self.stats.exports += 1
                if export.platform not in self.stats.platforms:
                    self.stats.platforms.append(export.platform)
                try:
                    self._export(files, reader, export)
                except StrongroomError:
                    raise
                except Exception as e:  # noqa: BLE001 - a reader failing on odd input must not fail the backup
                    self.warn(f"cannot catalogue the {export.platform} export at /{export.root}: {e}")
            self._members_from_sources(files)
            distinct_memo_keys(self.jobs, self.keyed)
            read_piece_jobs(self, self.jobs, self.early)
            self.jobs = []
        finally:
            if files is not self.tree:
                files.close()  # the zip archives it holds open
            while self._archives:
                self._archives.popitem()[1].close()
        if not self.parts:
            return None
        return self._write_tree()

    # -- one export --------------------------------------------------------------------------

    def _plan(self, files, reader: ExportReader, export: Export) -> _ExportPlan:
        """What cataloguing ``export`` takes: its parts' keys, the parts the cache already has,
        and the files to read piece by piece. Nothing is written."""
        content = {path: self._content_key(files, path) for path in export.files}
        context_files = sorted(p for p in export.files if posixpath.basename(p) in CONTEXT_NAMES)
        rel = {p: export_relative(export.root, p) for p in export.files}
        context = self.keyed(b"strongroom catalogue context\0" + b"".join(
            rel[p].encode("utf-8", "surrogateescape") + b"\0" + content[p] for p in sorted(context_files, key=rel.get)))
        data_files = [p for p in export.files if p not in context_files]
        keys = {p: part_key(self.keyed, export.platform, rel[p], content[p], context) for p in data_files}
        reused = {}
        if self.reuse is not None:
            for path in data_files:
                found = self.reuse.lookup(keys[path], self.writer.known)
                if found is not None:
                    reused[path] = found
        jobs = []
        for path in data_files:
            if path in reused:
                continue
            segment_reader = self._segment_reader(reader, files, export, path)
            if segment_reader is not None:
                # the readers' state version too: a memo made by other reader code is never used
                file_key = memo_key(self.keyed, export.platform, rel[path], context, STATE_VERSION)
                jobs.append(PieceJob(export, files, path, segment_reader, keys[path], file_key,
                                     files.size(path), self._local_source(path)))
        return _ExportPlan(content, context, context_files, data_files, keys, reused, jobs)

    def plan_jobs(self, tree_id: bytes, prefix: str) -> list[PieceJob]:
        """The files of the exports in a subtree (at ``prefix`` in the snapshot) that a forked
        copy could read piece by piece from their source files, before the snapshot's tree is
        complete (catalog_early). Nothing is written; zipped exports are left to ``build``."""
        self.tree = TreeFiles(self.repo, tree_id, prefix=prefix, verdicts=self.verdicts,
                              local_head=self._local_head if self.read_sources else None)
        jobs = []
        for reader, export in find_exports(self.tree, self.readers, self.warn):
            try:
                jobs += self._plan(self.tree, reader, export).jobs
            except StrongroomError:
                raise
            except Exception:  # noqa: BLE001 - build() reads it again and says what fails
                continue
        distinct_memo_keys(jobs, self.keyed)
        return [job for job in jobs if job.local is not None]

    def _export(self, files: TreeFiles, reader: ExportReader, export: Export) -> None:
        plan = self._plan(files, reader, export)
        context_files, data_files, keys, reused = plan.context_files, plan.data_files, plan.keys, plan.reused
        todo = [p for p in data_files if p not in reused]
        for path, (ids, lists, size) in reused.items():
            self._add_part(path, ids, lists, size)
            self.stats.parts_reused += 1
        first_job = len(self.jobs)
        self.jobs += plan.jobs
        segmented = {job.path for job in plan.jobs}
        todo = [p for p in todo if p not in segmented]
        if not todo:
            return
        try:
            if reused or segmented:
                view = SubsetFiles(files, context_files + todo)
                part = Export(export.platform, export.root, tuple(sorted(context_files + todo)))
                self._read(reader, view, part, keys, set(todo))
            else:
                self._read(reader, files, export, keys, set(todo))
        except _Monolithic:
            for path in reused:
                del self.parts[path]
            del self.jobs[first_job:]  # not read yet
            self.stats.parts_reused -= len(reused)
            everything = content_key(self.keyed, [plan.content[p] for p in sorted(export.files)])
            first = data_files[0] if data_files else export.files[0]
            key = part_key(self.keyed, export.platform, export_relative(export.root, first), everything, plan.context)
            self._read(reader, files, export, {first: key}, {first}, monolithic=first)

    # -- one file, piece by piece (spec §23.6) -------------------------------------------------

    def _segment_reader(self, reader: ExportReader, files, export: Export, path: str):
        """The reader's piece-by-piece reader for ``path``, or None (then the file is read whole)."""
        make = getattr(reader, "segment_reader", None)
        return make(files, export, path, self.warn) if make is not None else None

    def _content(self, files, path: str) -> Iterator[bytes]:
        """The bytes of ``path`` as the snapshot holds them, in blocks (never the whole file): a
        snapshot file's chunks one by one (measured cheaper here than the read-ahead fetcher), a
        zip member's in 1 MiB reads."""
        if self.tree.has(path):
            for chunk_id in self.tree.chunk_ids(path):
                yield self.repo.load_blob(chunk_id)
            return
        with files.open(path) as f:
            while block := f.read(1 << 20):
                yield block

    def read_pieces(self, job: PieceJob) -> None:
        """Write the part of ``job``'s file (the same part as ``_read`` writes, spec §23.6),
        feeding the file to the segment reader in record-sized pieces. A piece seen in the previous
        version of the file, in the same reader state, is not parsed again: its records and the
        state after it come from the file's memo (catalog_memo)."""
        memo = self.memos.load(job.memo_key) if self.memos is not None else PieceMemo()
        read = self.piece_chunks(job, memo)
        assert read is not None  # (it reads the repository when the source file will not do)
        chunks, memo = read
        self.write_part(job.export, job.path, job.key, chunks)
        self.stats.pieces_parsed += memo.parsed
        self.stats.pieces_reused += memo.reused
        if self.memos is not None:
            self.memos.remember(job.memo_key, memo)
        self.stats.files_read += 1

    def piece_chunks(self, job: PieceJob, memo: PieceMemo, warn: WarningCallback | None = None,
                     from_repository: bool = True) -> tuple[Iterator[bytes], PieceMemo] | None:
        """The record chunks of ``job``'s part, and the memo that reads it (the given one, or a
        fresh one over its previous entries if the source file changed while it was read: then
        the file is read from the repository, or None is returned without ``from_repository``).
        Every block is read (and, for a source file, verified) before the first chunk is given."""
        warn = warn or self.warn
        local = self._local_blocks(job.local) if job.local is not None else None
        if local is not None:
            said: list[str] = []  # given only if the local bytes turn out to be the stored ones
            chunks = self._chunks(memo, job.reader, local, said.append)
            try:
                first = next(chunks, None)
            except SourceChanged:
                memo = PieceMemo(memo.previous)  # nothing read from the changed file counts
            else:
                self.stats.sources_read += 1
                for message in said:
                    warn(message)
                return itertools.chain(() if first is None else (first,), chunks), memo
        if not from_repository:
            return None
        return self._chunks(memo, job.reader, self._content(job.files, job.path), warn), memo

    def _chunks(self, memo: PieceMemo, segment_reader, blocks: Iterable[bytes], warn) -> Iterator[bytes]:
        with ExternalSorter(self.repo.scratch_folder(), distinct=True) as sorter:
            for records in memo.read(segment_reader, blocks, warn, self.keyed):
                sorter.extend(records)  # a block's records
            # every block was read (and, for local bytes, verified) before anything is given
            yield from chunk_marked_records(map(record_line, sorter.sorted()), self.keyed)

    def _local_source(self, path: str) -> LocalSource | None:
        """The source file the snapshot's ``path`` was read from in this backup, or None (a zip
        member, or not reading source files)."""
        if not self.read_sources or not self.tree.has(path):
            return None
        node = self.tree.node(path)
        return None if node.content_hash is None else LocalSource("/" + path, node.size, node.content_hash)

    def _local_head(self, path: str) -> bytes | None:
        """A small file's head (its whole content) from the source file just stored, checked
        against the node's content hash: cheaper than a blob read from the repository."""
        node = self.tree.node(path)
        if node.content_hash is None or node.size > HEAD_BYTES:
            return None
        return small_source_head("/" + path, node.size, node.content_hash)

    def _members_from_sources(self, files) -> None:
        """Have the zip members to read piece by piece read from their archive's source file
        (as plain files are, and so by either process, catalog_parallel) when the backup has just
        stored it and they make up at least 1/MEMBERS_SHARE_TO_HASH of it: the archive is hashed
        whole once per process to check that it still holds the snapshot's bytes."""
        member_of = getattr(files, "member_of", None)
        if not self.read_sources or member_of is None:
            return
        by_archive: dict[str, list[tuple[PieceJob, str]]] = {}
        for job in self.jobs:
            where = member_of(job.path) if job.local is None else None
            if where is not None:
                by_archive.setdefault(where[0], []).append((job, where[1]))
        for archive, members in by_archive.items():
            source = self._local_source(archive)
            if source is None or sum(job.size for job, _ in members) * MEMBERS_SHARE_TO_HASH < source.size:
                continue
            for job, name in members:
                job.local = source._replace(member=name)

    def _local_blocks(self, local: LocalSource) -> Iterator[bytes] | None:
        """The blocks of a ``LocalSource``, checked against its size and content hash
        (SourceChanged after the last block if they differ); None when there is no such regular
        file of that size."""
        if local.member is not None:
            archive = self._local_archive(local)
            return None if archive is None else archive.blocks(local.member)
        fd = open_regular(local.path, local.size)
        return None if fd is None else verified_blocks(fd, local.size, local.content_hash)

    def _local_archive(self, local: LocalSource) -> LocalArchive | None:
        """The archive's source file, opened (at most LOCAL_ARCHIVES at once) and checked."""
        held = self._archives.get(local.path)
        if held is not None and held.usable():
            self._archives.move_to_end(local.path)
            return held
        if held is not None:
            del self._archives[local.path]
            held.close()
        held = LocalArchive.open(local)
        if held is not None:
            self._archives[local.path] = held
            while len(self._archives) > LOCAL_ARCHIVES:
                self._archives.popitem(last=False)[1].close()
        return held

    def _content_key(self, files, path: str) -> bytes:
        if self.tree.has(path):  # a file of the snapshot: its chunk ids say what it holds
            return content_key(self.keyed, self.tree.chunk_ids(path))
        digest = blake3.blake3()  # a zip member: hash its data as stored (not inflated)
        stored = files.stored(path) if hasattr(files, "stored") else None
        if stored is None:
            raise ValueError(f"{path}: neither a file of the snapshot nor a zip member")
        method, crc, size, blocks = stored
        for block in blocks:
            digest.update(block)
        return member_key(self.keyed, method, crc, size, digest.digest())

    def _source(self, export: Export, message: Message, wanted: set[str]) -> str:
        if export.root in wanted and len(export.files) == 1:
            return export.root  # a one-file export
        for candidate in (posixpath.normpath(posixpath.join(export.root, message.source)) if message.source else "",
                          message.source):
            if candidate in wanted:
                return candidate
        raise _Monolithic()

    def _read(self, reader: ExportReader, files, export: Export, keys: dict[str, bytes], wanted: set[str],
              monolithic: str | None = None) -> None:
        sorter = ExternalSorter(self.repo.scratch_folder(), distinct=True)
        sources: dict[str, str] = {}  # a message's source as the reader gives it -> the part's path
        try:
            self.stats.files_read += len(wanted)
            for message in _messages(reader, files, export, self.warn):
                source = monolithic or sources.get(message.source)
                if source is None:
                    source = sources[message.source] = self._source(export, message, wanted)
                sorter.add((source, (message.conversation, message.time_ms, message.message_id),
                            encode_record(message)))
            self._write_parts(export, sorter.sorted(), keys)
        finally:
            sorter.close()

    def _write_parts(self, export: Export, records: Iterator[tuple], keys: dict[str, bytes]) -> None:
        """Write one part per source file, streaming: only the part's chunk ids stay in memory."""
        for source, group in itertools.groupby(records, key=lambda r: r[0]):
            lines = ((line, None) for _, _, line in group)
            self.write_part(export, source, keys[source], chunk_marked_records(lines, self.keyed))

    def write_part(self, export: Export, path: str, key: bytes, record_chunks: Iterable[bytes]) -> None:
        """Write the part of ``path`` from its record chunks (catalog_format.chunk_marked_records of
        its sorted, distinct record lines: the sorters drop a message given twice)."""
        count = 0
        chunks = []
        for chunk in record_chunks:
            count += chunk.count(b"\n")  # a line each
            chunks.append((self.writer.add(DATA, chunk, text=True)[0], len(chunk)))
        header = PartHeader(export.platform, export_relative(export.root, path), key, count).encode()
        content = FileContent(self.writer)
        content.append(self.writer.add(DATA, header, text=True)[0])
        size = len(header)
        for blob_id, n in chunks:
            content.append(blob_id)
            size += n
        ids, lists = content.finish()
        self._add_part(path, ids, lists, size)
        self.stats.parts += 1
        self.stats.messages += count
        if self.reuse is not None:
            self.reuse.remember(key, ids, lists, size)

    def _add_part(self, source: str, ids: list[bytes], lists: list[bytes], size: int) -> None:
        self.parts[source] = Node(name=os.fsencode(posixpath.basename(source)), type=FILE, mode=0o600, size=size,
                                  content=ids, content_lists=lists)

    # -- the tree ----------------------------------------------------------------------------

    def _write_tree(self) -> bytes:
        """Directories mirroring the parts' paths, written bottom-up (deepest first)."""
        children: dict[str, list[Node]] = {}
        for path, node in self.parts.items():
            children.setdefault(posixpath.dirname(path), []).append(node)
        folders = set(children)
        for folder in list(folders):
            while folder:
                folder = posixpath.dirname(folder)
                folders.add(folder)
        for folder in sorted(folders, key=lambda f: (-f.count("/") if f else 1, f)):
            if not folder:
                continue
            subtree = self.writer.add(TREE, encode_tree(children.get(folder, [])))[0]
            parent = posixpath.dirname(folder)
            children.setdefault(parent, []).append(Node(name=os.fsencode(posixpath.basename(folder)), type=DIR,
                                                        mode=0o700, subtree=subtree))
        return self.writer.add(TREE, encode_tree(children.get("", [])))[0]


def build_catalog(repo: Repository, writer: BlobWriter, tree_id: bytes, *, readers=None, reuse=None,
                  memos=None, warn: WarningCallback = ignore_warning, read_sources: bool = False,
                  parallel: bool = False, verdicts=None, early=()) -> tuple[bytes | None, CatalogStats]:
    """The catalogue of a snapshot tree (see CatalogBuilder). With ``verdicts`` (the messages
    cache's), recognition is remembered: per file content, and a tree found to hold no export
    is not looked at again."""
    default_readers = readers is None and DEFAULT_READERS is None  # what the remembered verdicts are of
    if verdicts is None or not default_readers:
        verdicts = recognised = None
    else:
        recognised = _recognition_key(repo, tree_id)
        if verdicts.tree_without_exports(recognised):
            return None, CatalogStats()
    builder = CatalogBuilder(repo, writer, readers=readers, reuse=reuse, memos=memos, warn=warn,
                             read_sources=read_sources, parallel=parallel, verdicts=verdicts, early=early)
    root = builder.build(tree_id)
    if verdicts is not None and builder.stats.exports == 0:
        verdicts.remember_tree_without_exports(recognised)
    return root, builder.stats


def _recognition_key(repo: Repository, tree_id: bytes) -> bytes:
    """What recognising a snapshot tree's exports depends on: the tree below the chain of
    folders that each hold one folder and nothing else (the backed-up path's parents, whose
    times change with every file created beside it), and that chain's names."""
    names = []
    while True:
        nodes = repo.load_tree(tree_id)
        if len(nodes) != 1 or nodes[0].type != DIR:
            return b"/".join(names) + b"\0" + tree_id
        names.append(nodes[0].name)
        tree_id = nodes[0].subtree


def catalog_for_backup(repo: Repository, writer: BlobWriter, tree_id: bytes, warn: WarningCallback,
                       parent=None, readers: Iterable[ExportReader] | None = None, early=None) -> bytes | None:
    """The backup's hook: catalogue the new snapshot's exports and store the catalogue (flushed).
    A failure costs the catalogue, never the backup: it is reported and `messages index` can
    build it later. ``early``: the catalog_early.EarlyCatalogue begun while the backup stored
    files (its cache is used here; the caller closes it)."""
    if repo.write_only:
        return None  # it cannot read the export back; `messages index` with a full key can
    if (parent is not None and parent.catalog and parent.tree == tree_id.hex()
            and writer.known(bytes.fromhex(parent.catalog))):
        return bytes.fromhex(parent.catalog)  # nothing changed: the same files, the same catalogue
    from strongroom.messages.catalog_index import MessageIndex
    try:
        # the cache's part table says which parts can be reused
        with contextlib.nullcontext(early.index) if early is not None else MessageIndex(repo) as index:
            root, _ = build_catalog(repo, writer, tree_id, readers=readers, reuse=index.part_nodes,
                                    memos=index.memos, warn=warn, read_sources=True, parallel=True,
                                    verdicts=index.verdicts, early=early.shares if early is not None else ())
            writer.flush()
            index.part_nodes.flush()
            index.memos.flush()
            index.verdicts.flush()
            return root
    except StrongroomError as e:
        warn(f"message catalogue not written: {e} (run `strongroom messages index` later)")
        return None
