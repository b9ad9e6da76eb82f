"""DiscordChatExporter JSON: one channel per file (spec §22.5).

    {"guild": {"id", "name", ...}, "channel": {"id", "type", "name", ...}, "dateRange": ...,
     "exportedAt": ..., "messages": [{"id", "type", "timestamp", "timestampEdited", "content",
     "author": {"id", "name", "nickname", ...}, "attachments": [...], "reference": ...}],
     "messageCount": N}"""

from __future__ import annotations

import json
from typing import BinaryIO, Iterable, Iterator

import ijson

from ..model import Export, ExportFiles, Message
from .common import (
    BomSkipping, Warn, converted, first_item, guarded, head, head_events, head_test, iso_ms, json_items,
    log_warning, s, top_keys)
from .segments import CAPTURE, DESCEND, RECORD, JsonSegments

PLATFORM = "discord"


def _recognised(data: bytes) -> bool:
    events = head_events(data)
    keys = top_keys(events)
    starts = {p for p, e, v in events if e == "start_map"}
    return keys[:2] == ["guild", "channel"] and {"guild", "channel"} <= starts


class DiscordReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        return [Export(PLATFORM, p, (p,)) for p in files.paths()
                if p.endswith(".json") and head_test(files, p, "discord 1", _recognised)]

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        path = export.files[0]
        source = path.rpartition("/")[2]

        def produce(report) -> Iterator[Message]:
            data = head(files, path)
            guild, channel = first_item(data, "guild"), first_item(data, "channel")
            if not isinstance(channel, dict):  # a header longer than the head: stream to it
                guild, channel = _first(files, path, "guild"), _first(files, path, "channel")
            conv = conversation(guild, channel)
            with files.open(path) as f:
                yield from converted(json_items(f, "messages.item"), lambda m: _message(m, conv, source), report,
                                     "message")

        yield from guarded(path, warn or log_warning, produce)

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn | None = None) -> JsonSegments | None:
        """The file piece by piece (spec §22.10): records under ``messages``; ``guild`` and
        ``channel`` (which precede them) captured from the stream, only their names and ids."""
        if path != export.files[0]:
            return None
        source = path.rpartition("/")[2]
        return JsonSegments(path, _SEGMENT_ROUTES, lambda rec, c: [
            _message(rec, conversation(c.get("guild"), c.get("channel")), source)])


def _names(value) -> dict | None:
    """What a conversation name needs of a guild or channel object."""
    return {k: value[k] for k in ("id", "name") if k in value} if isinstance(value, dict) else None


_SEGMENT_ROUTES = {"": (DESCEND, ()), "guild": (CAPTURE, "guild", _names),
                   "channel": (CAPTURE, "channel", _names), "messages": (DESCEND, ()),
                   "messages.item": (RECORD,)}


def _first(files: ExportFiles, path: str, prefix: str):
    with files.open(path) as f:
        return next(iter(ijson.items(BomSkipping(f), prefix)), None)


def conversation(guild, channel) -> str:
    """``<guild name>/<channel name>``: channel names repeat across servers ("general")."""
    g = s(guild.get("name")) if isinstance(guild, dict) else ""
    c = s(channel.get("name")) or s(channel.get("id")) if isinstance(channel, dict) else ""
    return f"{g}/{c}" if g else c


def _message(m, conv: str, source: str) -> Message:
    if not isinstance(m, dict):
        raise TypeError(f"expected an object, got {type(m).__name__}")
    author = m.get("author") or {}
    if not isinstance(author, dict):
        raise TypeError("author is not an object")
    ref = m.get("reference")
    atts = m.get("attachments") or []
    if not isinstance(atts, list):
        raise TypeError("attachments is not a list")
    return Message(
        platform=PLATFORM, conversation=conv, message_id=s(m["id"]),
        author=s(author.get("name")) or s(author.get("id")), time_ms=iso_ms(m["timestamp"]),
        edited=m.get("timestampEdited") is not None, text=s(m.get("content")), source=source,
        reply_to=s(ref.get("messageId")) if isinstance(ref, dict) else "",
        attachments=tuple(s(a.get("url") or a.get("fileName")) for a in atts if isinstance(a, dict)))


# ---- native output


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """A DiscordChatExporter JSON document of one channel, streamed."""
    n = 0
    for m in messages:
        if n == 0:
            guild, _, channel = m.conversation.rpartition("/")
            out.write(b'{\n  "guild": ' + _j({"id": "0", "name": guild or "Direct Messages"}) +
                      b',\n  "channel": ' + _j({"id": "0", "type": "GuildTextChat", "name": channel}) +
                      b',\n  "messages": [')
        rec = {"id": m.message_id, "type": "Reply" if m.reply_to else "Default",
               "timestamp": _iso(m.time_ms), "timestampEdited": _iso(m.time_ms) if m.edited else None,
               "content": m.text, "author": {"id": "0", "name": m.author},
               "attachments": [{"url": a, "fileName": a.rpartition("/")[2]} for a in m.attachments]}
        if m.reply_to:
            rec["reference"] = {"messageId": m.reply_to}
        out.write((b"\n    " if n == 0 else b",\n    ") + _j(rec))
        n += 1
    if n == 0:
        out.write(b'{\n  "guild": {"id": "0", "name": ""},\n  "channel": {"id": "0", "name": ""},\n'
                  b'  "messages": [')
    out.write(b'\n  ],\n  "messageCount": %d\n}\n' % n)


def _j(o) -> bytes:
    return json.dumps(o, ensure_ascii=False).encode()


def _iso(ms: int) -> str:
    import datetime as dt
    d = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).replace(microsecond=(ms % 1000) * 1000)
    return d.isoformat(timespec="milliseconds")
