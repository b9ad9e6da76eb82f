"""Telegram Desktop "Export chat history" / "Export Telegram data" in JSON (``result.json``).

Two shapes (spec §22.4): a single chat ``{"name", "type", "id", "messages": [...]}`` and the
full-account export ``{"about", "personal_information", ..., "chats": {"list": [chat...]},
"left_chats": {"list": [...]}}``.  ``text`` is a string or an array of strings and entity
objects ``{"type", "text"}``."""

from __future__ import annotations

import json
from typing import BinaryIO, Iterable, Iterator

import ijson

from ..model import Export, ExportFiles, Message
from .common import (
    BomSkipping, Warn, converted, guarded, head, head_events, head_test, iso_ms, json_items, log_warning, s,
    top_keys)
from .segments import CAPTURE, DESCEND, RECORD, JsonSegments

PLATFORM = "telegram"
_FULL_KEYS = {"personal_information", "chats", "left_chats", "contacts", "frequent_contacts"}


def shape(data: bytes) -> str | None:
    """"chat", "full" or None, from a file's first bytes."""
    events = head_events(data)
    if not events or events[0][1] != "start_map":
        return None
    keys = top_keys(events)
    if keys[:1] == ["about"] and _FULL_KEYS & set(keys):
        return "full"
    kinds = {p: e for p, e, v in events if p in ("type", "id")}
    if kinds.get("type") == "string" and kinds.get("id") == "number" and "messages" in keys:
        first = [p for p, e, v in events if p.startswith("messages.item.") and e != "map_key"]
        if first and not any(p in ("messages.item.date", "messages.item.date_unixtime") for p in first):
            return None  # messages that are not Telegram's
        return "chat"
    return None


class TelegramReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        return [Export(PLATFORM, p, (p,)) for p in files.paths()
                if p.endswith(".json") and head_test(files, p, "telegram 1", shape)]

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        path = export.files[0]
        source = path.rpartition("/")[2]

        def produce(report) -> Iterator[Message]:
            kind = shape(head(files, path))
            with files.open(path) as f:
                if kind == "chat":
                    chat = {"name": None, "id": None}
                    for p, e, v in head_events(head(files, path)):
                        if p in ("name", "id") and e in ("string", "number", "null"):
                            chat[p] = v
                    stream = ((chat, m) for m in json_items(f, "messages.item"))
                else:
                    stream = _full(f)
                yield from converted(stream, lambda cm: _message(cm[1], _conv(cm[0]), source), report, "message")

        yield from guarded(path, warn or log_warning, produce)

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn | None = None) -> JsonSegments | None:
        """The file piece by piece (spec §22.10), either shape: records under the top-level
        ``messages`` (one chat, whose top-level ``name`` and ``id`` are captured) or under each
        chat of ``chats.list`` and ``left_chats.list`` (each chat's ``name`` and ``id``, which
        precede its messages, captured afresh per chat)."""
        if path != export.files[0]:
            return None
        source = path.rpartition("/")[2]
        return JsonSegments(path, _SEGMENT_ROUTES, lambda rec, chat: [_message(rec, _conv(chat), source)])


def _conv(chat: dict) -> str:
    name = chat.get("name")
    return name if isinstance(name, str) and name else f"chat {chat.get('id')}"


def _full(f) -> Iterator[tuple[dict, object]]:
    """(chat, message) for every chat of a full export.  The chat's name and id come before its
    messages in Telegram's output; the events are watched on their way to ijson's C builder
    (kept to a length test per event: this loop is the reader's hot path)."""
    chat: dict = {}

    def events():
        nonlocal chat
        left = False  # inside "left_chats": its events are renamed to read like "chats"
        for ev in ijson.parse(BomSkipping(f), use_float=True):
            p = ev[0]
            if len(p) <= 25:
                if p == "" and ev[1] == "map_key":
                    left = ev[2] == "left_chats"
                if left and p.startswith("left_"):
                    ev = (p[5:], ev[1], ev[2])
                    p = ev[0]
                if p == "chats.list.item":
                    if ev[1] == "start_map":
                        chat = {}
                elif (p == "chats.list.item.name" or p == "chats.list.item.id") and ev[1] != "map_key":
                    chat[p[16:]] = ev[2]
            elif left:
                ev = (p[5:], ev[1], ev[2])
            yield ev

    for m in ijson.items(events(), "chats.list.item.messages.item"):
        yield chat, m


def _scalar(value):
    """A captured chat name or id: a container reads as None (as the whole-file reader has it)."""
    return None if isinstance(value, (dict, list)) else value


_SEGMENT_ROUTES: dict[str, tuple] = {
    "": (DESCEND, ()), "name": (CAPTURE, "name", _scalar), "id": (CAPTURE, "id", _scalar),
    "messages": (DESCEND, ()), "messages.item": (RECORD,)}
for _list in ("chats", "left_chats"):
    _SEGMENT_ROUTES.update({
        _list: (DESCEND, ()), f"{_list}.list": (DESCEND, ()),
        f"{_list}.list.item": (DESCEND, ("name", "id")),
        f"{_list}.list.item.name": (CAPTURE, "name", _scalar),
        f"{_list}.list.item.id": (CAPTURE, "id", _scalar),
        f"{_list}.list.item.messages": (DESCEND, ()),
        f"{_list}.list.item.messages.item": (RECORD,)})


def flatten(text) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        return "".join(t if isinstance(t, str) else s(t["text"]) for t in text)
    if text is None:
        return ""
    raise TypeError(f"text is a {type(text).__name__}")


def _message(m, conv: str, source: str) -> Message:
    if not isinstance(m, dict):
        raise TypeError(f"expected an object, got {type(m).__name__}")
    mid = m["id"]
    if isinstance(mid, bool) or not isinstance(mid, (int, float, str)):
        raise TypeError("id is not a number")
    unix = m.get("date_unixtime")
    time_ms = int(unix) * 1000 if unix not in (None, "") else iso_ms(m["date"])
    author = s(m.get("from")) or s(m.get("actor")) or s(m.get("from_id")) or s(m.get("actor_id"))
    reply = m.get("reply_to_message_id")
    atts = tuple(s(m[k]) for k in ("photo", "file") if m.get(k))
    return Message(
        platform=PLATFORM, conversation=conv, message_id=s(mid), author=author, time_ms=time_ms,
        edited="edited" in m or "edited_unixtime" in m, text=flatten(m.get("text")), source=source,
        reply_to=s(reply) if reply is not None else "", attachments=atts)


# ---- native output


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """A single-chat ``result.json`` (Telegram Desktop's "Export chat history"), streamed."""
    first = True
    for m in messages:
        if first:
            out.write(b'{\n "name": ' + _j(m.conversation) + b',\n "type": "private_group",\n'
                      b' "id": 0,\n "messages": [')
        rec: dict = {"id": int(m.message_id) if m.message_id.isdigit() else m.message_id,
                     "type": "message", "date": _iso(m.time_ms), "date_unixtime": str(m.time_ms // 1000),
                     "from": m.author}
        if m.edited:
            rec["edited"] = rec["date"]
            rec["edited_unixtime"] = rec["date_unixtime"]
        if m.reply_to:
            rec["reply_to_message_id"] = int(m.reply_to) if m.reply_to.isdigit() else m.reply_to
        if m.attachments:
            rec["file"] = m.attachments[0]
        rec["text"] = m.text
        out.write((b"\n  " if first else b",\n  ") + _j(rec))
        first = False
    out.write(b'{\n "name": null,\n "type": "private_group",\n "id": 0,\n "messages": []\n}\n'
              if first else b"\n ]\n}\n")


def _j(o) -> bytes:
    return json.dumps(o, ensure_ascii=False).encode()


def _iso(ms: int) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
