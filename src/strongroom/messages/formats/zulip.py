"""Zulip realm exports (``manage.py export`` / the organisation export), unpacked (spec §22.7).

    realm.json             {"zerver_realm": [...], "zerver_userprofile": [...],
                            "zerver_stream": [...], "zerver_recipient": [...], ...}
    messages-000001.json   {"zerver_message": [{"id", "sender", "recipient", "subject",
                            "content", "date_sent", "last_edit_time", ...}], "zerver_usermessage": …}

Users, streams and recipients are read from ``realm.json`` into memory (their number is the
organisation's size, not the history's); messages are streamed."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import BinaryIO, Iterable, Iterator

from ..model import Export, ExportFiles, Message
from .common import (
    RECORD_ERRORS, Warn, guarded, head, head_events, int_ms, json_items, log_warning, s, top_keys)
from .segments import DESCEND, RECORD, JsonSegments

PLATFORM = "zulip"
_MESSAGES = re.compile(r"^messages-\d+\.json$")
PERSONAL, STREAM, GROUP = 1, 2, 3  # zerver_recipient.type


def _keys(data: bytes) -> list[str]:
    events = head_events(data)
    return top_keys(events) if events and events[0][1] == "start_map" else []


class ZulipReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        realms: list[str] = []
        by_dir: dict[str, list[str]] = {}
        for p in files.paths():
            d, _, name = p.rpartition("/")
            if name == "realm.json":
                realms.append(p)
            elif _MESSAGES.match(name):
                by_dir.setdefault(d, []).append(p)
        found = []
        for realm in realms:
            keys = _keys(head(files, realm))
            if not any(k.startswith("zerver_") for k in keys):
                continue
            root = realm.rpartition("/")[0]
            msgs = [p for p in by_dir.get(root, []) if _keys(head(files, p))[:1] == ["zerver_message"]]
            found.append(Export(PLATFORM, root, tuple([realm] + sorted(msgs))))
        return found

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        # roles by name, not position: a caller may pass the files re-sorted or a subset
        warn = warn or log_warning
        realm = self._realm(files, export, warn)
        for p in export.files:
            if _MESSAGES.match(p.rpartition("/")[2]):
                yield from guarded(p, warn, lambda report, p=p: _read(files, p, realm, report))

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn | None = None) -> JsonSegments | None:
        """A messages file piece by piece (spec §22.10): records under ``zerver_message``; the
        context is realm.json (read once per export and tree object, as Slack's users.json)."""
        if path not in export.files or not _MESSAGES.match(path.rpartition("/")[2]):
            return None
        memo = self._realm_memo  # the messages files of one export share it
        if memo is None or memo[0] is not files or memo[1] != export:
            memo = self._realm_memo = (files, export, self._realm(files, export, warn or log_warning))
        realm, source = memo[2], path.rpartition("/")[2]
        return JsonSegments(path, _SEGMENT_ROUTES, lambda rec, captures: [_message(rec, realm, source)])

    _realm_memo: tuple | None = None

    def _realm(self, files: ExportFiles, export: Export, warn: Warn) -> _Realm:
        realm = _Realm()
        for p in export.files:
            if p.rpartition("/")[2] == "realm.json":
                for _ in guarded(p, warn, lambda report, p=p: realm.read(files, p, report)):
                    pass
        return realm


class _Realm:
    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.streams: dict[int, str] = {}
        self.recipients: dict[int, tuple[int, int]] = {}  # id → (type, type_id)

    def read(self, files, path, report) -> Iterator[Message]:
        for table in ("zerver_userprofile", "zerver_userprofile_mirrordummy",
                      "zerver_userprofile_crossrealm", "zerver_stream", "zerver_recipient"):
            with files.open(path) as f:
                for row in json_items(f, table + ".item"):
                    try:
                        if table == "zerver_stream":
                            self.streams[int(row["id"])] = s(row["name"])
                        elif table == "zerver_recipient":
                            self.recipients[int(row["id"])] = (int(row["type"]), int(row["type_id"]))
                        else:
                            self.users[int(row["id"])] = s(row.get("full_name")) or s(row.get("email"))
                    except RECORD_ERRORS as exc:
                        report.bad_record(table, exc)
        return iter(())

    def user(self, uid) -> str:
        return self.users.get(uid) or f"user {uid}"

    def conversation(self, recipient: int, sender: int) -> str:
        """A stream's name; "@a,b" for a direct conversation (sorted names); "@group N"."""
        kind, type_id = self.recipients[recipient]
        if kind == STREAM:
            return self.streams.get(type_id) or f"stream {type_id}"
        if kind == PERSONAL:
            return "@" + ",".join(sorted({self.user(sender), self.user(type_id)}))
        return f"@group {type_id}"


def _read(files, path, realm: _Realm, report) -> Iterator[Message]:
    source = path.rpartition("/")[2]
    with files.open(path) as f:
        for n, m in enumerate(json_items(f, "zerver_message.item")):
            try:
                yield _message(m, realm, source)
            except RECORD_ERRORS as exc:
                report.bad_record(f"message {n}", exc)


def _message(m, realm: _Realm, source: str) -> Message:
    if not isinstance(m, dict):
        raise TypeError(f"expected an object, got {type(m).__name__}")
    sender = int(m["sender"])
    return Message(
        platform=PLATFORM, conversation=realm.conversation(int(m["recipient"]), sender),
        message_id=s(m["id"]), author=realm.user(sender),
        time_ms=int_ms(float(m["date_sent"]) * 1000),
        edited=m.get("last_edit_time") is not None, text=s(m.get("content")),
        source=source, topic=s(m.get("subject", m.get("topic_name"))))


_SEGMENT_ROUTES = {"": (DESCEND, ()), "zerver_message": (DESCEND, ()),
                   "zerver_message.item": (RECORD,)}


# ---- native output


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """A zip of a minimal realm export: ``realm.json`` (users, streams, recipients) and
    ``messages-000001.json``; stream conversations only keep their name, direct ones become a
    stream of that name.  Messages are spooled by the zip member, users are kept in memory."""
    users: dict[str, int] = {}
    streams: dict[str, int] = {}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("messages-000001.json", "w") as f:
            w = io.TextIOWrapper(f, "utf-8")
            w.write('{"zerver_message": [')
            for n, m in enumerate(messages):
                uid = users.setdefault(m.author, len(users) + 1)
                sid = streams.setdefault(m.conversation, len(streams) + 1)
                rec = {"id": int(m.message_id) if m.message_id.isdigit() else m.message_id,
                       "sender": uid, "recipient": sid, "subject": m.topic, "content": m.text,
                       "date_sent": m.time_ms / 1000, "last_edit_time": m.time_ms / 1000 if m.edited else None}
                w.write(("\n" if n == 0 else ",\n") + json.dumps(rec, ensure_ascii=False))
            w.write("\n]}\n")
            w.flush()
            w.detach()
        z.writestr("realm.json", json.dumps({
            "zerver_realm": [{"id": 1, "string_id": "export"}],
            "zerver_userprofile": [{"id": i, "full_name": name} for name, i in users.items()],
            "zerver_stream": [{"id": i, "name": name} for name, i in streams.items()],
            "zerver_recipient": [{"id": i, "type": STREAM, "type_id": i} for i in streams.values()],
        }, ensure_ascii=False, indent=1))
