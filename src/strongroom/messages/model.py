"""The records every export format is read into, and the file-tree view readers work on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator, Protocol

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the export shows it on that night.

    ``(platform, conversation, message_id)`` identifies a message across snapshots: an edit keeps
    the key and changes ``text``; a deletion removes the key from later snapshots."""

    platform: str  # "slack", "mattermost", "telegram", "discord", "whatsapp", "zulip", "matrix"
    conversation: str  # channel / chat / room name as the export names it (stable across nights)
    message_id: str  # the platform's id; formats without ids derive a stable one (see formats)
    author: str  # display or user name as the export gives it
    time_ms: int  # UTC milliseconds since the epoch
    edited: bool
    text: str
    source: str = ""  # path of the export file (relative to the export root) it was read from
    # Optional context some formats carry (spec §22); readers fill what the export gives.
    reply_to: str = ""  # message_id of the thread root / replied-to message, same conversation
    topic: str = ""  # Zulip topic inside the stream (the conversation); "" elsewhere
    attachments: tuple[str, ...] = ()  # attached files as the export references them (path/name)


class ExportFiles(Protocol):
    """A read-only tree of regular files: a local directory, a zip archive, a snapshot's tree."""

    def paths(self) -> Iterable[str]:
        """Relative POSIX paths of all regular files, sorted."""

    def size(self, path: str) -> int: ...

    def open(self, path: str) -> BinaryIO:
        """A binary stream of the file's content (callers read it incrementally and close it)."""


@dataclass(frozen=True)
class Export:
    """A recognised export inside an :class:`ExportFiles` tree."""

    platform: str
    root: str  # relative path of the export's top directory or file ("" for the tree's root)
    files: tuple[str, ...]  # the files the reader uses (relative to the tree's root)


class SegmentReader(Protocol):
    """Reads one export file piece by piece (spec §22.10), so a caller can keep the result of
    each piece under (state before it, piece) and never read an unchanged piece again.

    Rules every implementation keeps:

    - *Equivalence*: for any partition of the file's bytes into consecutive pieces (empty pieces
      allowed), threading the state from :meth:`initial` and passing ``final=True`` with the
      last piece, the messages returned, concatenated, equal what ``ExportReader.messages``
      yields for that file, in the same order (for well-formed input).
    - *Determinism*: the state is a function of the bytes consumed so far (and the reader's
      context) only: the same prefix in different pieces gives byte-identical states. It holds
      no offsets or counters: only the structural position, context captured from the stream,
      and the bytes of an unfinished token or record.
    - *Bounded memory*: a record longer than ``common.MAX_LINE`` is skipped with one warning,
      never accumulated.
    - *Bad content never raises*: a document that stops parsing gives one warning and a terminal
      state (the rest of the file yields nothing); a record of the wrong shape is skipped with
      a warning (at most ``MAX_RECORD_WARNINGS`` per :meth:`feed` call, then a count)."""

    def initial(self) -> bytes:
        """The state before the file's first byte."""

    def feed(self, state: bytes, data: bytes, final: bool, warn: Warn) -> tuple[list[Message], bytes]:
        """Messages completed in ``data`` (after the bytes that led to ``state``), and the state
        after it. ``final``: ``data`` ends the file."""

    # Optional: ``pieces(blocks) -> Iterator[(piece, final)]``, where a caller that keeps results
    # per piece should cut the file (about one record a piece; the last piece, possibly empty,
    # final). Without it the caller cuts after a separator it sniffs (catalog_memo.pieces).


class ExportReader(Protocol):
    platform: str

    def find(self, files: ExportFiles) -> list[Export]:
        """The exports of this platform in ``files``, recognised by structure, not by name alone."""

    def messages(self, files: ExportFiles, export: Export) -> Iterator[Message]:
        """Stream the export's messages (memory bounded by one message/record, not the file)."""



class SegmentedExportReader(ExportReader, Protocol):
    """An :class:`ExportReader` that can also read data files piece by piece (optional: callers
    look for the method with ``getattr(reader, "segment_reader", None)``)."""

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn) -> SegmentReader | None:
        """A piece-by-piece reader for the data file ``path`` of ``export`` (context such as
        Slack's users.json already read), or None: read this file whole with ``messages``."""
