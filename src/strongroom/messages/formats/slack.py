"""Slack workspace exports (a folder or a zip): ``channels.json`` & co. plus day files.

Shape (Slack's "Export data" and the samples generator)::

    channels.json  groups.json  dms.json  mpims.json   arrays of {"id", "name"|"members", ...}
    users.json                                          array of {"id", "name", "real_name", ...}
    <conversation>/<YYYY-MM-DD>.json                    array of message objects

The folder name is the conversation (channel/group name; a DM's id).  Spec §22.2."""

from __future__ import annotations

import datetime as _dt
import json
import re
import zipfile
from typing import BinaryIO, Iterable, Iterator

from ..model import Export, ExportFiles, Message
from .common import Warn, converted, guarded, head, head_events, json_items, log_warning, rel, s
from .segments import DESCEND, RECORD, JsonSegments

PLATFORM = "slack"
META = ("channels.json", "groups.json", "dms.json", "mpims.json")
_DAY = re.compile(r"^(?:(.*)/)?([^/]+)/(\d{4}-\d{2}-\d{2})\.json$")
#: Placeholders Slack leaves for deleted thread roots: not messages (spec §22.1).
_SKIP_SUBTYPES = frozenset({"tombstone"})


def _is_meta(data: bytes) -> bool:
    """An array whose first element is an object with a string ``id`` and a ``name`` or
    ``members`` key (or an empty array), judged from events: the first channel of a large
    workspace (thousands of members) does not fit in the head."""
    events = head_events(data)
    if not events or events[0][:2] != ("", "start_array"):
        return False
    if len(events) > 1 and events[1][:2] == ("", "end_array"):
        return True
    if len(events) < 2 or events[1][:2] != ("item", "start_map"):
        return False
    keys: dict[str, str] = {}
    for (p, e, v), nxt in zip(events, events[1:]):
        if p == "item" and e == "map_key":
            keys[v] = nxt[1]  # type: ignore[index]
    return keys.get("id") == "string" and ("name" in keys or "members" in keys)


class SlackReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        metas: dict[str, list[str]] = {}
        days: dict[str, list[str]] = {}
        for p in files.paths():
            d, _, name = p.rpartition("/")
            if name in META or name == "users.json":
                metas.setdefault(d, []).append(p)
                continue
            m = _DAY.match(p)
            if m:
                days.setdefault(m.group(1) or "", []).append(p)
        found = []
        for root, meta in sorted(metas.items()):
            if not any(p.rpartition("/")[2] in META and _is_meta(head(files, p)) for p in meta):
                continue
            found.append(Export(PLATFORM, root, tuple(sorted(meta + days.get(root, [])))))
        return found

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        warn = warn or log_warning
        users = self._users(files, export, warn)
        for p in export.files:
            m = _DAY.match(p)
            if m is None or (m.group(1) or "") != export.root:
                continue
            yield from guarded(p, warn, lambda report, p=p, conv=m.group(2): _day(files, p, conv, export, users, report))

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn | None = None) -> JsonSegments | None:
        """Day files piece by piece (spec §22.10): records are the top-level array's items; the
        context is the folder's name and users.json (read once per export and tree object: a
        tree is taken not to change while it is read)."""
        m = _DAY.match(path)
        if m is None or (m.group(1) or "") != export.root or path not in export.files:
            return None
        memo = self._users_memo  # the day files of one export share it: read users.json once
        if memo is None or memo[0] is not files or memo[1] != export:
            memo = self._users_memo = (files, export, self._users(files, export, warn or log_warning))
        users = memo[2]
        conv, source = m.group(2), rel(export.root, path)
        return JsonSegments(path, _SEGMENT_ROUTES,
                            lambda rec, captures: _listed(_message(rec, conv, source, users)))

    _users_memo: tuple | None = None

    def _users(self, files: ExportFiles, export: Export, warn: Warn) -> dict[str, str]:
        """users.json: id → name (else real_name, else the id)."""
        users: dict[str, str] = {}
        users_path = f"{export.root}/users.json" if export.root else "users.json"
        if users_path in export.files:
            def read_users(report) -> Iterator[Message]:
                with files.open(users_path) as f:
                    for u in json_items(f, "item"):
                        if isinstance(u, dict) and isinstance(u.get("id"), str):
                            users[u["id"]] = s(u.get("name")) or s(u.get("real_name")) or u["id"]
                return iter(())
            for _ in guarded(users_path, warn, read_users):
                pass
        return users


_SEGMENT_ROUTES = {"": (DESCEND, ()), "item": (RECORD,)}


def _listed(message: Message | None) -> list[Message]:
    return [] if message is None else [message]


def _day(files, path, conv, export, users, report) -> Iterator[Message]:
    source = rel(export.root, path)
    with files.open(path) as f:
        yield from converted(json_items(f, "item"), lambda m: _message(m, conv, source, users), report, "message")


def ts_ms(ts: str) -> int:
    """Slack's "seconds.micros" timestamp as milliseconds (exact, no float rounding)."""
    sec, _, frac = ts.partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"bad Slack ts {ts!r}")
    return int(sec) * 1000 + int((frac + "000")[:3])


def _message(m, conv: str, source: str, users: dict[str, str]) -> Message | None:
    if not isinstance(m, dict):
        raise TypeError(f"expected an object, got {type(m).__name__}")
    if m.get("subtype") in _SKIP_SUBTYPES:
        return None
    ts = s(m["ts"])
    uid = s(m.get("user"))
    profile = m.get("user_profile")
    author = users.get(uid) or (s(profile.get("name")) if isinstance(profile, dict) else "") \
        or s(m.get("username")) or uid or s(m.get("bot_id"))
    thread = s(m.get("thread_ts"))
    atts = m.get("files") or []
    if not isinstance(atts, list):
        raise TypeError("files is not a list")
    return Message(
        platform=PLATFORM, conversation=conv, message_id=ts, author=author, time_ms=ts_ms(ts),
        edited=isinstance(m.get("edited"), dict), text=s(m.get("text")), source=source,
        reply_to=thread if thread and thread != ts else "",
        attachments=tuple(s(a.get("name") or a.get("id")) for a in atts if isinstance(a, dict)),
    )


# ---- native output: a Slack export zip of one or more conversations


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """A zip in Slack's export layout: ``channels.json``, ``users.json`` and day files.

    Messages must come in time order per conversation (the catalogue exports them so); memory
    holds one conversation-day."""
    users: dict[str, str] = {}
    convs: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        written: set[str] = set()
        key, batch = None, []

        def flush() -> None:
            if batch:
                name = f"{key[0]}/{key[1]}.json"
                if name in written:
                    raise ValueError("messages are not in time order")
                written.add(name)
                z.writestr(name, _dumps(batch))

        for m in messages:
            day = _dt.datetime.fromtimestamp(m.time_ms / 1000, _dt.timezone.utc).date().isoformat()
            conv = _safe_folder(m.conversation)
            if (conv, day) != key:
                flush()
                key, batch = (conv, day), []
            if conv not in convs:
                convs.append(conv)
            uid = users.setdefault(m.author, "U%07d" % (len(users) + 1))
            ts = m.message_id if _is_ts(m.message_id) else "%d.%06d" % divmod(m.time_ms * 1000, 1_000_000)
            rec: dict = {"type": "message", "text": m.text, "user": uid, "ts": ts}
            if m.edited:
                rec["edited"] = {"user": uid, "ts": ts}
            if m.reply_to:
                rec["thread_ts"] = m.reply_to
            if m.attachments:
                rec["files"] = [{"name": a} for a in m.attachments]
            batch.append(rec)
        flush()
        z.writestr("channels.json", _dumps([{"id": "C%08d" % (i + 1), "name": c} for i, c in enumerate(convs)]))
        z.writestr("users.json", _dumps([{"id": uid, "name": name} for name, uid in users.items()]))


def _is_ts(x: str) -> bool:
    a, _, b = x.partition(".")
    return a.isdigit() and b.isdigit()


def _safe_folder(name: str) -> str:
    name = name.replace("/", "_").replace("\\", "_")
    return "_" if name in ("", ".", "..") else name


def _dumps(o) -> str:
    return json.dumps(o, ensure_ascii=False, indent=4)
