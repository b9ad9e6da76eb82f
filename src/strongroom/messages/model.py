"""The records every export format is read into, and the file-tree view readers work on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, Protocol


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


class ExportReader(Protocol):
    platform: str

    def find(self, files: ExportFiles) -> list[Export]:
        """The exports of this platform in ``files``, recognised by structure, not by name alone."""

    def messages(self, files: ExportFiles, export: Export) -> Iterator[Message]:
        """Stream the export's messages (memory bounded by one message/record, not the file)."""
