"""Export readers: recognise chat exports by structure and stream their messages (spec §22).

    READERS                        one ExportReader per platform
    find_exports(files, warn)      [(reader, export)] for every export found in a file tree
    LocalExportFiles(root)         a directory as an ExportFiles tree
    ZipExportFiles(source)         a zip archive (path or seekable binary stream)
    expand_zips(files)             a tree whose zip archives also appear as directories
    write_native(platform, messages, out)   the platform's own format, one binary stream
    reader.segment_reader(files, export, path, warn)   one data file piece by piece, or None
                                   (every format; spec §22.10)

Readers never raise for bad content: ``warn`` (a ``Callable[[str], None]``; default: the
``strongroom.messages`` logger) gets one line per skipped file or record."""

from __future__ import annotations

from typing import BinaryIO, Callable, Iterable

from ..model import Export, ExportFiles, ExportReader, Message
from . import discord, matrix, mattermost, slack, telegram, whatsapp, zulip
from .common import FORMAT_ERRORS, Warn, log_warning
from .files import HeadCache, LocalExportFiles, ZipExportFiles, expand_zips

__all__ = ["READERS", "find_exports", "LocalExportFiles", "ZipExportFiles", "expand_zips",
           "write_native"]

#: Order matters: a file claimed by an earlier reader is not offered to later ones, and the
#: folder-shaped formats come first so their many small JSON files are not sniffed again.
READERS: list[ExportReader] = [
    slack.SlackReader(),
    zulip.ZulipReader(),
    mattermost.MattermostReader(),
    whatsapp.WhatsAppReader(),
    telegram.TelegramReader(),
    discord.DiscordReader(),
    matrix.MatrixReader(),
]

#: platform → writer(messages, out) of its native single-stream form (spec §22.9).
NATIVE_WRITERS: dict[str, Callable[[Iterable[Message], BinaryIO], None]] = {
    "slack": slack.write,
    "mattermost": mattermost.write,
    "telegram": telegram.write,
    "discord": discord.write,
    "whatsapp": whatsapp.write,
    "zulip": zulip.write,
    "matrix": matrix.write,
}


def find_exports(files: ExportFiles, warn: Warn | None = None) -> list[tuple[ExportReader, Export]]:
    """Every export in ``files``, in reader order.  A reader that fails on content (it should
    not) is reported through ``warn`` and skipped, so recognition never stops a backup."""
    warn = warn or log_warning
    claimed: set[str] = set()
    view = HeadCache(files, claimed)
    found: list[tuple[ExportReader, Export]] = []
    for reader in READERS:
        try:
            exports = reader.find(view)
        except FORMAT_ERRORS as exc:
            warn(f"{reader.platform}: recognition failed: {exc}")
            continue
        for e in exports:
            found.append((reader, e))
            claimed.update(e.files)
    return found


def write_native(platform: str, messages: Iterable[Message], out: BinaryIO) -> None:
    """Write ``messages`` (one conversation, in time order) in ``platform``'s own format."""
    try:
        writer = NATIVE_WRITERS[platform]
    except KeyError:
        raise ValueError(f"no native format for platform {platform!r}") from None
    writer(messages, out)
