"""Element's "Export chat" JSON of a Matrix room (spec §22.8).

    {"room_name", "room_creator", "topic", "export_date", "exported_by",
     "messages": [{"event_id", "type", "sender", "origin_server_ts", "content": {"msgtype",
                   "body", "m.relates_to", "m.new_content", "url"}, "unsigned": {...}}]}

Edits are events of their own (``m.relates_to.rel_type == "m.replace"``) that may come after the
event they edit.  A first pass finds them (a byte search for ``m.replace`` skips it when there
are none), holding only the edits (original event id → latest replacement) in memory; the
second pass yields each original event once, with the latest text and ``edited`` set."""

from __future__ import annotations

import hashlib
import json
from typing import BinaryIO, Iterable, Iterator

from ..model import Export, ExportFiles, Message
from .common import (
    FORMAT_ERRORS, RECORD_ERRORS, Warn, converted, first_item, guarded, head, head_events, head_test, int_ms,
    json_items,
    log_warning, s, top_keys)
from .segments import DESCEND, RECORD, JsonSegments

PLATFORM = "matrix"


def _recognised(data: bytes) -> bool:
    events = head_events(data)
    if not events or events[0][1] != "start_map":
        return False
    keys = top_keys(events)
    if "room_name" in keys and ("messages" in keys or "export_date" in keys or "exported_by" in keys):
        return True
    if keys[:1] == ["messages"]:
        first = first_item(data, "messages.item")
        return isinstance(first, dict) and "event_id" in first and "origin_server_ts" in first
    return False


class MatrixReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        return [Export(PLATFORM, p, (p,)) for p in files.paths()
                if p.endswith(".json") and head_test(files, p, "matrix 1", _recognised)]

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        path = export.files[0]
        source = path.rpartition("/")[2]

        def produce(report) -> Iterator[Message]:
            room = first_item(head(files, path), "room_name")
            conv = room if isinstance(room, str) and room else source[:-5]
            edits = _edits(files, path) if _mentions_replace(files, path) else {}
            with files.open(path) as f:
                yield from converted(json_items(f, "messages.item"), lambda ev: _message(ev, conv, source, edits),
                                     report, "event")

        yield from guarded(path, warn or log_warning, produce)

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn | None = None) -> _InContext | None:
        """The file piece by piece (spec §22.10): records under ``messages``.  The room's name
        (from the head, as above) and the edits (the first pass above, over the whole file: an
        edit may follow the event it edits) are taken first; a digest of both begins every
        state, so a piece's result is reused only under the same name and the same edits."""
        if path != export.files[0]:
            return None
        source = path.rpartition("/")[2]
        try:
            room = first_item(head(files, path), "room_name")
            edits = _edits(files, path) if _mentions_replace(files, path) else {}
        except FORMAT_ERRORS:  # unreadable content (a broken zip member): read it whole
            return None
        conv = room if isinstance(room, str) and room else source[:-5]
        inner = JsonSegments(path, _SEGMENT_ROUTES, lambda ev, _: _listed(_message(ev, conv, source, edits)))
        return _InContext(inner, _context_digest(conv, edits))


_SEGMENT_ROUTES = {"": (DESCEND, ()), "messages": (DESCEND, ()), "messages.item": (RECORD,)}


def _listed(message: Message | None) -> list[Message]:
    return [] if message is None else [message]


def _context_digest(conv: str, edits: dict[str, tuple[int, str]]) -> bytes:
    canonical = json.dumps([conv, sorted(edits.items())], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest().encode()


class _InContext:
    """A segment reader whose states begin with ``matrix1 <digest of the context>\\0``: values
    taken from outside the bytes read so far (the room's name from the head, the whole file's
    edits), so states, and results kept under them, never match across another context."""

    def __init__(self, inner: JsonSegments, digest: bytes) -> None:
        self.inner = inner
        self.prefix = b"matrix1 " + digest + b"\0"

    def initial(self) -> bytes:
        return self.prefix + self.inner.initial()

    def feed(self, state: bytes, data: bytes, final: bool, warn: Warn) -> tuple[list[Message], bytes]:
        if not state.startswith(self.prefix):
            raise ValueError("a Matrix segment reader state of another context")
        messages, after = self.inner.feed(state[len(self.prefix):], data, final, warn)
        return messages, self.prefix + after


def _mentions_replace(files, path) -> bool:
    tail = b""
    with files.open(path) as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return False
            if b"m.replace" in tail + block[:16] or b"m.replace" in block:
                return True
            tail = block[-16:]


def _replaces(ev) -> str | None:
    """The event id an ``m.replace`` edit event replaces, else None."""
    content = ev.get("content") if isinstance(ev, dict) else None
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if isinstance(rel, dict) and rel.get("rel_type") == "m.replace" and isinstance(rel.get("event_id"), str):
        return rel["event_id"]
    return None


def _edits(files, path) -> dict[str, tuple[int, str]]:
    edits: dict[str, tuple[int, str]] = {}
    try:
        with files.open(path) as f:
            for ev in json_items(f, "messages.item"):
                _edit(ev, edits)
    except FORMAT_ERRORS:
        pass  # the edits before the damage count; the second pass reports it
    return edits


def _edit(ev, edits: dict[str, tuple[int, str]]) -> None:
    target = _replaces(ev)
    if target is None:
        return
    try:
        ts = int_ms(ev["origin_server_ts"])
        new = ev["content"].get("m.new_content") or ev["content"]
        body = s(new.get("body"))
    except RECORD_ERRORS:
        return  # a broken edit leaves the original as it is
    if target not in edits or edits[target][0] <= ts:
        edits[target] = (ts, body)


def _message(ev, conv: str, source: str, edits) -> Message | None:
    if not isinstance(ev, dict):
        raise TypeError(f"expected an object, got {type(ev).__name__}")
    if ev.get("type") not in ("m.room.message", "m.sticker") or _replaces(ev) is not None:
        return None  # state events, reactions, encrypted events; edits are applied to originals
    content = ev.get("content")
    if not isinstance(content, dict):
        raise TypeError("content is not an object")
    if not content:  # redacted: the message is gone
        return None
    eid = s(ev["event_id"])
    text, edited = s(content.get("body")), False
    if eid in edits:
        text, edited = edits[eid][1], True
    rel = content.get("m.relates_to")
    reply = ""
    if isinstance(rel, dict):
        into = rel.get("m.in_reply_to")
        if isinstance(into, dict):
            reply = s(into.get("event_id"))
        elif rel.get("rel_type") == "m.thread":
            reply = s(rel.get("event_id"))
    url = content.get("url")
    return Message(
        platform=PLATFORM, conversation=conv, message_id=eid, author=s(ev["sender"]),
        time_ms=int_ms(ev["origin_server_ts"]), edited=edited, text=text, source=source,
        reply_to=reply, attachments=(s(url),) if isinstance(url, str) and url else ())


# ---- native output


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """Element's export JSON of one room, streamed (edits already applied: one event each)."""
    first = True
    for m in messages:
        if first:
            out.write(b'{\n  "room_name": ' + _j(m.conversation) + b',\n  "messages": [')
        content: dict = {"msgtype": "m.file" if m.attachments else "m.text", "body": m.text}
        if m.attachments:
            content["url"] = m.attachments[0]
        if m.reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": m.reply_to}}
        ev = {"type": "m.room.message", "event_id": m.message_id, "sender": m.author,
              "origin_server_ts": m.time_ms, "content": content}
        out.write((b"\n    " if first else b",\n    ") + _j(ev))
        if m.edited:  # the edit as its own event, as the server sends it
            out.write(b",\n    " + _j({
                "type": "m.room.message", "event_id": m.message_id + ":edit", "sender": m.author,
                "origin_server_ts": m.time_ms, "content": {
                    "msgtype": "m.text", "body": "* " + m.text, "m.new_content": dict(content),
                    "m.relates_to": {"rel_type": "m.replace", "event_id": m.message_id}}}))
        first = False
    out.write(b'{\n  "room_name": "",\n  "messages": []\n}\n' if first else b"\n  ]\n}\n")


def _j(o) -> bytes:
    return json.dumps(o, ensure_ascii=False).encode()
