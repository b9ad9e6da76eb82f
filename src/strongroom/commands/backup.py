"""The backup use case: walk sources, chunk and store files, build trees, write a snapshot."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Iterable, Iterator

from strongroom.chunker import SNIFF_SIZE, TEXT, buffer_size_for, chunk_views, classify
from strongroom.commands import Progress, ProgressCallback, WarningCallback, ignore_progress, ignore_warning
from strongroom.errors import SnapshotNotFound, SourceError, StrongroomError, UsageError
from strongroom.globs import PathMatcher
from strongroom.pack import DATA, TREE
from strongroom.rechunk import PreviousChunks, guided_chunk_views
from strongroom.recover import index_orphan_packs
from strongroom.repository import Repository
from strongroom.snapshot import Snapshot, Summary
from strongroom.tree import ARCHIVE, DIR, FILE, Node, encode_tree
from strongroom.walker import describe_special, list_dir, node_from_stat, open_for_reading, total_size
from strongroom.writer import BlobWriter, FileContent, content_hasher, hash_stream

PROGRESS_EVERY_BYTES = 4 * 1024 * 1024
UNKNOWN_CHUNK = bytes(32)  # not a chunk id the index can hold (the index has no entry for it)
READING_STEP = 8 * 1024 * 1024  # how often the early catalogue hears of the bytes read (catalog_early)


@dataclass
class BackupOptions:
    paths: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    hostname: str | None = None
    excludes: list[str] = field(default_factory=list)
    parent: str | None = None  # snapshot id; None = latest with the same host and paths
    force: bool = False  # re-read files even if their metadata is unchanged
    dry_run: bool = False
    stdin: BinaryIO | None = None  # back up this stream as one file ...
    stdin_filename: str = "stdin"  # ... with this name
    stdin_command: list[str] | None = None  # or the standard output of this command
    catalog: bool = True  # catalogue the messages of recognised exports (spec §23)
    expand_archives: bool = False  # store zip/tar/tar.gz/tar.zst files member-wise (archive nodes)


@dataclass
class BackupResult:
    snapshot: Snapshot | None
    summary: Summary
    warnings: list[str]
    dry_run: bool = False
    archives: list[dict] = field(default_factory=list)  # archive files read this time (--expand-archives)

    @property
    def partial(self) -> bool:
        return self.summary.errors > 0


@dataclass
class _DirFrame:
    """One directory being walked: its entries still to visit and the nodes made so far."""

    path: bytes
    node: Node | None
    entries: Iterator[tuple[bytes, os.stat_result | OSError]]
    previous: dict[bytes, Node]
    nodes: list[Node] = field(default_factory=list)
    candidates: bool = False  # holds, here or below, a file the catalogue may read (early catalogue)


class _Backup:
    def __init__(self, repo: Repository, writer: BlobWriter, opts: BackupOptions,
                 progress: ProgressCallback, warn: WarningCallback) -> None:
        self.repo = repo
        self.writer = writer
        self.opts = opts
        self.excludes = PathMatcher(opts.excludes)
        self.progress = progress
        self._warn = warn
        self.summary = Summary()
        self.warnings: list[str] = []
        profiles = repo.config.chunking
        self.buffer = bytearray(max(buffer_size_for(profiles.text), buffer_size_for(profiles.binary)))
        self._since_progress = 0
        self.total_bytes: int | None = None  # set by the size scan, when progress is shown
        self._unchanged_bytes = 0
        self.archives: list[dict] = []
        # Changed files are chunked guided by their previous chunks (spec §7.5), unless --force asks
        # for everything afresh, or the profiles' size ranges overlap (then a previous chunk's
        # length would not tell which profile cut it).
        self.guided = not opts.force and profiles.distinct()
        # the catalogue begun while files are stored (messages.catalog_early.EarlyCatalogue): told
        # when a folder directly below a backed-up folder is stored, and every READING_STEP bytes
        self.early = None
        self._next_reading = 0

    def warn(self, message: str, *, error: bool = True) -> None:
        if error:
            self.summary.errors += 1
        self.warnings.append(message)
        self._warn(message)

    def _tick(self, path: bytes, nbytes: int, file_done: bool) -> None:
        if self.progress is ignore_progress:
            return  # nobody listens (no terminal, --json): skip building events per file
        self._since_progress += nbytes
        if file_done or self._since_progress >= PROGRESS_EVERY_BYTES:
            self._since_progress = 0
            s = self.summary
            done = s.bytes_read + self._unchanged_bytes  # bytes dealt with, read or not
            self.progress(Progress(files=s.files_new + s.files_changed + s.files_unchanged, bytes=done,
                                   current=os.fsdecode(path), total_bytes=self.total_bytes))

    # -- files -------------------------------------------------------------------------------

    def store_stream(self, stream: BinaryIO, path: bytes, previous: Node | None = None
                     ) -> tuple[list[bytes], list[bytes], int, bytes]:
        """Chunk and store a stream; return (inline chunk ids, chunk-list ids, bytes read, content hash).
        ``previous``: the file's node in the parent snapshot, whose chunks guide the chunking."""
        hasher = content_hasher()
        head = _read_head(stream)
        content_class = classify(head)
        params = self.repo.config.chunking.for_class(content_class)
        text = content_class == TEXT
        content = FileContent(self.writer)
        total = 0
        blob_id_of, known, add = self.repo.master.blob_id, self.writer.known, self.writer.add
        records = text and self.repo.config.chunking.records
        if self.guided and previous is not None and previous.type == FILE and previous.size:
            chunks = guided_chunk_views(stream, params, self._previous_chunks(previous), blob_id_of,
                                        buffer=self.buffer, prefix=head, digest=hasher, records=records)
        else:
            chunks = ((view, blob_id_of(view), False) for view in
                      chunk_views(stream, params, buffer=self.buffer, prefix=head, digest=hasher, records=records))
        for chunk, blob_id, reused in chunks:
            if not reused and not known(blob_id):
                # copied: the view's buffer is about to be reused
                add(DATA, bytes(chunk), blob_id, text=text, unknown=True)
            content.append(blob_id)
            total += len(chunk)
            self.summary.bytes_read += len(chunk)
            self._tick(path, len(chunk), False)
        ids, lists = content.finish()
        return ids, lists, total, hasher.digest()

    def _previous_chunks(self, node: Node) -> PreviousChunks:
        """A previous version's chunks, their lengths from the index. If a chunk-list blob cannot
        be read (check reports that), the list ends with an id of unknown length: never verified,
        and the chunk before it is not taken for the file's last."""
        def ids() -> Iterator[bytes]:
            try:
                yield from self.repo.file_chunks(node)
            except StrongroomError:
                yield UNKNOWN_CHUNK

        def lengths(chunk_ids: list[bytes]) -> list[int | None]:
            return [loc.entry.raw_length if loc is not None and loc.entry.type == DATA else None
                    for loc in self.repo.index.lookup_many(chunk_ids)]
        return PreviousChunks(ids(), lengths)

    def _reusable(self, node: Node, previous: Node | None) -> bool:
        """The metadata skip: an unchanged file keeps its previous node (plain, or archive when
        --expand-archives is on) if every blob it names is still in the index."""
        if previous is None or self.opts.force or previous.size != node.size or previous.mtime_ns != node.mtime_ns \
                or previous.ctime_ns != node.ctime_ns or previous.inode != node.inode:
            return False
        if previous.type == FILE:
            return self.writer.known_all(previous.content + previous.content_lists)
        if previous.type == ARCHIVE and self.opts.expand_archives:
            a = previous.archive
            return self.writer.known_all([previous.subtree, *a.layout, *a.skeleton, *a.skeleton_lists])
        return False

    def save_file(self, path: bytes, node: Node, previous: Node | None) -> Node | None:
        if self._reusable(node, previous):
            node.type, node.content, node.content_lists = previous.type, previous.content, previous.content_lists
            node.subtree, node.archive = previous.subtree, previous.archive
            node.content_hash = previous.content_hash
            self.summary.files_unchanged += 1
            self.summary.bytes_total += node.size
            self._unchanged_bytes += node.size
            self._tick(path, 0, True)
            return node
        try:
            fd = open_for_reading(path)
        except OSError as e:
            self.warn(f"cannot read {os.fsdecode(path)}: {e.strerror}")
            return None
        try:
            with io.FileIO(fd, "rb", closefd=True) as f:
                if not (self.opts.expand_archives and self.save_archive(fd, path, node)) \
                        and not self._same_content(f, path, node, previous):
                    stored = self.store_stream(f, path, previous)
                    node.content, node.content_lists, node.size, node.content_hash = stored
        except OSError as e:
            self.warn(f"cannot read {os.fsdecode(path)}: {e.strerror}")
            return None
        if previous is None:
            self.summary.files_new += 1
        else:
            self.summary.files_changed += 1
        self.summary.bytes_total += node.size
        self._tick(path, 0, True)
        return node

    def save_archive(self, fd: int, path: bytes, node: Node) -> bool:
        """Store a zip/tar file member-wise into ``node``; False if it is not one (or cannot be:
        then a warning, not an error, and the caller stores it plain from the start)."""
        # imported here: only --expand-archives needs them, and every backup's start-up would pay
        from strongroom.archives.detect import detect
        from strongroom.archives.source import NotExpandable
        from strongroom.archives.store import store_archive
        kind = detect(fd)
        if kind is None:
            return False
        shown = os.fsdecode(path)
        read_before = self.summary.bytes_read
        try:
            stored = store_archive(fd, node, kind, _ArchiveSink(self, path))
        except NotExpandable as e:
            self.summary.bytes_read = read_before
            os.lseek(fd, 0, os.SEEK_SET)
            self.warn(f"{shown}: {kind} archive stored as a plain file, not member-wise: {e}", error=False)
            self.archives.append({"path": shown, "format": kind, "stored": "plain", "reason": str(e)})
            return False
        a = node.archive
        self.archives.append({"path": shown, "format": kind, "stored": "members", "members": a.members,
                              "fidelity": a.fidelity, "reencoded_members": stored.reencoded,
                              "verbatim_members": stored.verbatim})
        return True

    def _same_content(self, f: io.FileIO, path: bytes, node: Node, previous: Node | None) -> bool:
        """Whether the file holds exactly the previous version's bytes (by their content hash), in
        which case its chunk ids are reused and chunking is skipped; else ``f`` is rewound."""
        if (previous is None or self.opts.force or previous.type != FILE or previous.content_hash is None
                or previous.size != node.size):
            return False
        digest, size = hash_stream(f, self.buffer)
        if (digest != previous.content_hash or size != previous.size
                or not self.writer.known_all(previous.content + previous.content_lists)):
            f.seek(0)
            return False
        node.content, node.content_lists, node.size = previous.content, previous.content_lists, size
        node.content_hash = digest
        self.summary.bytes_read += size
        self._tick(path, size, False)
        return True

    # -- directories -------------------------------------------------------------------------

    def previous_nodes(self, tree_id: bytes | None) -> dict[bytes, Node]:
        if tree_id is None:
            return {}
        try:
            return {n.name: n for n in self.repo.load_tree(tree_id)}
        except StrongroomError as e:
            self.warn(f"parent snapshot tree unreadable, re-reading files: {e}", error=False)
            return {}

    def save_leaf(self, path: bytes, node: Node, previous: Node | None) -> Node | None:
        """A file or symlink node, with its content stored; None if it could not be read."""
        if node.type == FILE:
            return self.save_file(path, node, previous)
        try:
            node.target = os.readlink(path)
        except OSError as e:
            self.warn(f"cannot read symlink {os.fsdecode(path)}: {e.strerror}")
            return None
        return node

    def save_entry(self, path: bytes, name: bytes, st: os.stat_result, previous: Node | None) -> Node | None:
        node = node_from_stat(name, st)
        if node is None:
            self.warn(f"skipping {describe_special(st)} {os.fsdecode(path)}", error=False)
            return None
        if node.type != DIR:
            return self.save_leaf(path, node, previous)
        node.subtree = self.save_dir(path, previous.subtree if previous is not None and previous.type == DIR else None)
        return node

    def _open_dir(self, path: bytes, node: Node | None, previous_tree: bytes | None) -> _DirFrame:
        self.summary.dirs += 1
        try:
            entries = list_dir(path)
        except OSError as e:
            self.warn(f"cannot list {os.fsdecode(path)}: {e.strerror}")
            entries = []
        return _DirFrame(path, node, iter(entries), self.previous_nodes(previous_tree))

    def save_dir(self, path: bytes, previous_tree: bytes | None) -> bytes:
        """Store a directory tree; return its tree id. Depth first with an explicit stack, so
        nesting depth is not limited by Python's recursion limit."""
        stack = [self._open_dir(path, None, previous_tree)]
        while True:
            frame = stack[-1]
            descended = False
            for name, st in frame.entries:
                child = os.path.join(frame.path, name)
                if isinstance(st, OSError):
                    self.warn(f"cannot stat {os.fsdecode(child)}: {st.strerror}")
                    continue
                if self.excludes.matches(child):
                    continue
                node = node_from_stat(name, st)
                if node is None:
                    self.warn(f"skipping {describe_special(st)} {os.fsdecode(child)}", error=False)
                    continue
                previous = frame.previous.get(name)
                if node.type == DIR:
                    prev_tree = previous.subtree if previous is not None and previous.type == DIR else None
                    stack.append(self._open_dir(child, node, prev_tree))
                    descended = True
                    break
                leaf = self.save_leaf(child, node, previous)
                if leaf is not None:
                    frame.nodes.append(leaf)
                if self.early is not None:
                    frame.candidates = frame.candidates or name.lower().endswith(self.early.suffixes)
                    if self.summary.bytes_read >= self._next_reading:
                        self._next_reading = self.summary.bytes_read + READING_STEP
                        self.early.reading(self.summary.bytes_read)
            if descended:
                continue
            tree_id = self.writer.add(TREE, encode_tree(frame.nodes))[0]
            stack.pop()
            if not stack:
                return tree_id
            if frame.candidates:
                stack[-1].candidates = True
                if len(stack) == 1:  # (a folder without export candidates is not worth a flush)
                    self.early.folder_stored(frame.path, tree_id, self.summary.bytes_read)
            frame.node.subtree = tree_id
            stack[-1].nodes.append(frame.node)

    def save_virtual(self, prefix: bytes, children: dict, previous_tree: bytes | None) -> bytes:
        """A tree for the path components above the backed-up paths (``/``, ``/var`` ...)."""
        previous = self.previous_nodes(previous_tree)
        nodes = []
        for name in sorted(children):
            path = os.path.join(prefix, name)
            try:
                st = os.lstat(path)
            except OSError as e:
                raise SourceError(f"cannot back up {os.fsdecode(path)}: {e.strerror}") from None
            sub = children[name]
            if sub is None:  # a path given on the command line
                node = self.save_entry(path, name, st, previous.get(name))
                if node is None:
                    continue
            else:
                node = node_from_stat(name, st)
                if node is None or node.type != DIR:
                    raise SourceError(f"cannot back up below {os.fsdecode(path)}: not a directory")
                prev = previous.get(name)
                node.subtree = self.save_virtual(path, sub, prev.subtree if prev and prev.type == DIR else None)
            nodes.append(node)
        return self.writer.add(TREE, encode_tree(nodes))[0]

    def save_stdin(self, stream: BinaryIO, name: bytes) -> bytes:
        now = time.time_ns()
        node = Node(name=name, type=FILE, mode=0o600, mtime_ns=now, ctime_ns=now, uid=os.getuid(), gid=os.getgid())
        node.content, node.content_lists, node.size, node.content_hash = self.store_stream(stream, name)
        self.summary.files_new += 1
        self.summary.bytes_total += node.size
        return self.writer.add(TREE, encode_tree([node]))[0]


class _ArchiveSink:
    """How archive members reach the repository: chunked and stored like any file."""

    def __init__(self, job: _Backup, path: bytes) -> None:
        self.job, self.path = job, path

    def store(self, stream: BinaryIO, what: bytes) -> tuple[list[bytes], list[bytes], int]:
        ids, lists, size, _content_hash = self.job.store_stream(stream, self.path)
        return ids, lists, size

    def add_tree(self, data: bytes) -> bytes:
        return self.job.writer.add(TREE, data)[0]


def _read_head(stream: BinaryIO) -> bytes:
    """The first SNIFF_SIZE bytes (fewer only at end of stream), however short the reads."""
    head = b""
    while len(head) < SNIFF_SIZE:
        part = stream.read(SNIFF_SIZE - len(head))
        if not part:
            break
        head += part
    return head


def path_trie(paths: Iterable[str]) -> dict:
    """Absolute paths as nested dicts of components; a leaf (None) is a path to back up whole."""
    trie: dict = {}
    for p in sorted({os.path.abspath(os.fsencode(p)) for p in paths}):
        parts = [c for c in p.split(b"/") if c]
        if not parts:
            raise UsageError("backing up / itself is not supported; name the directories below it")
        node = trie
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if child is None:
                break  # an ancestor is already backed up whole
            node = child
        else:
            node[parts[-1]] = None
    return trie


def _find_parent(repo: Repository, opts: BackupOptions, hostname: str, paths: list[str]) -> Snapshot | None:
    if repo.write_only:
        # It cannot read snapshots or trees: no metadata skip, every file is read again (new
        # chunks are still deduplicated against the index). See README, "Keys and access".
        if opts.parent:
            raise UsageError("--parent needs a full key: a write-only key cannot read snapshots")
        return None
    if opts.parent:
        return repo.find_snapshot(opts.parent)
    try:
        return repo.find_snapshot("latest", hostname=hostname, paths=paths)
    except SnapshotNotFound:
        return None


def run_backup(repo: Repository, opts: BackupOptions, *, progress: ProgressCallback = ignore_progress,
               warn: WarningCallback = ignore_warning) -> BackupResult:
    started = time.monotonic()
    hostname = opts.hostname or repo.hostname
    stdin_mode = opts.stdin is not None or opts.stdin_command is not None
    if stdin_mode:
        name = os.fsencode(opts.stdin_filename)
        if not name or b"/" in name or name in (b".", b".."):
            raise UsageError(f"invalid --stdin-filename {opts.stdin_filename!r}: one file name without '/'")
        paths = ["/" + opts.stdin_filename]
    else:
        if not opts.paths:
            raise UsageError("nothing to back up: give at least one path")
        for p in opts.paths:
            if not os.path.lexists(p):
                raise SourceError(f"cannot back up {p}: no such file or directory")
        paths = sorted({os.fsdecode(os.path.abspath(os.fsencode(p))) for p in opts.paths})
    parent = None if stdin_mode else _find_parent(repo, opts, hostname, paths)

    with repo.lock(exclusive=False):
        if not opts.dry_run and not repo.write_only:  # reading pack headers needs a full key
            index_orphan_packs(repo, warn)
        with BlobWriter(repo, dry_run=opts.dry_run) as writer:
            job = _Backup(repo, writer, opts, progress, warn)
            if progress is not ignore_progress and not stdin_mode:
                _start_size_scan(job, paths)
            parent_tree = bytes.fromhex(parent.tree) if parent else None
            early = None
            if opts.catalog and not opts.dry_run and not stdin_mode:
                from strongroom.messages.catalog_early import EarlyCatalogue  # begun while files are stored
                job.early = early = EarlyCatalogue.open(repo, writer)
            try:
                if opts.stdin_command is not None:
                    tree = _backup_command(job, opts.stdin_command, name)
                elif opts.stdin is not None:
                    tree = job.save_stdin(opts.stdin, name)
                else:
                    tree = job.save_virtual(b"/", path_trie(paths), parent_tree)
                writer.flush()
                catalog = None
                if opts.catalog and not opts.dry_run:
                    from strongroom.messages.catalog_build import catalog_for_backup
                    catalog = catalog_for_backup(repo, writer, tree, lambda m: job.warn(m, error=False), parent,
                                                 early=early)
            finally:
                if early is not None:
                    early.close()
            summary = job.summary
            summary.bytes_added = writer.bytes_added
            summary.blobs_added = writer.blobs_added
            summary.duration_s = round(time.monotonic() - started, 3)
            snap = Snapshot(time=datetime.now().astimezone().isoformat(), hostname=hostname, username=repo.username,
                            paths=paths, tree=tree.hex(), tags=sorted(set(opts.tags)),
                            parent=parent.id if parent else None, summary=summary,
                            catalog=catalog.hex() if catalog else None)
            if not opts.dry_run:
                repo.save_snapshot(snap)
                try:
                    repo.audit("backup", {"paths": paths, "host": hostname, "tags": snap.tags,
                                          "parent": snap.parent, "stdin": stdin_mode},
                               added=[f"snapshots/{snap.id}"] + [f"index/{n}" for n in writer.index_files_written],
                               result="ok" if not summary.errors else f"partial: {summary.errors} error(s)")
                except StrongroomError as e:  # the snapshot is safe; say so rather than fail the backup
                    job.warn(f"snapshot {snap.short_id} saved, but its audit log entry was not: {e}", error=False)
    return BackupResult(None if opts.dry_run else snap, summary, job.warnings, opts.dry_run, job.archives)


def _start_size_scan(job: _Backup, paths: list[str]) -> None:
    """Count the bytes below the paths in the background, so progress can show an ETA."""
    def scan() -> None:
        job.total_bytes = total_size([os.fsencode(p) for p in paths], job.excludes.matches)
    threading.Thread(target=scan, name="size-scan", daemon=True).start()


def _backup_command(job: _Backup, command: list[str], name: bytes) -> bytes:
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    except OSError as e:
        raise SourceError(f"cannot run {command[0]}: {e.strerror}") from None
    try:
        tree = job.save_stdin(proc.stdout, name)
    finally:
        proc.stdout.close()
        code = proc.wait()
    if code != 0:
        raise SourceError(f"command {command[0]} exited with status {code}: no snapshot written")
    return tree
