"""Mattermost bulk export (JSON lines, ``mmctl export create`` / the samples generator).

The first record is ``{"type": "version", "version": 1, ...}``; then team, channel, user …
records; messages are ``post`` records (``team``, ``channel``, ``user``, ``message``,
``create_at``, ``edit_at``, ``replies``: the thread's replies nested in their root) and
``direct_post`` records (``channel_members`` instead of team/channel).  Spec §22.3."""

from __future__ import annotations

import hashlib
import json
from typing import BinaryIO, Iterable, Iterator

from ..model import Export, ExportFiles, Message
from .common import RECORD_ERRORS, Warn, guarded, head_test, int_ms, lines, log_warning, s
from .line_segments import LineSegments

PLATFORM = "mattermost"


def _first_record(data: bytes):
    line = data.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
    try:
        return json.loads(line)
    except ValueError:
        return None


def _recognised(data: bytes) -> bool:
    rec = _first_record(data)
    return isinstance(rec, dict) and rec.get("type") == "version" and isinstance(rec.get("version"), int)


class MattermostReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        found = []
        for p in files.paths():
            if not p.endswith((".jsonl", ".json")):
                continue
            if head_test(files, p, "mattermost 1", _recognised):
                found.append(Export(PLATFORM, p, (p,)))
        return found

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        path = export.files[0]
        yield from guarded(path, warn or log_warning, lambda report: _read(files, path, report))

    def segment_reader(self, files: ExportFiles, export: Export, path: str,
                       warn: Warn | None = None) -> LineSegments | None:
        """The file piece by piece, line by line (spec §22.10)."""
        if path != export.files[0]:
            return None
        source = path.rpartition("/")[2]
        return LineSegments(path, lambda line: line_messages(line, source))


def _read(files, path, report) -> Iterator[Message]:
    source = path.rpartition("/")[2]
    with files.open(path) as f:
        for n, line in lines(f, report):
            try:
                out = line_messages(line, source)
            except RECORD_ERRORS as exc:
                report.bad_record(f"line {n}", exc)
                continue
            yield from out


def line_messages(line: bytes, source: str) -> list[Message]:
    """The messages of one line (without its end): a post and its replies, or none."""
    if not line.strip() or b'"post"' not in line and b'"direct_post"' not in line:
        return []  # cheap pre-filter: version/team/channel/user/emoji records
    rec = json.loads(line)
    kind = rec.get("type")
    if kind == "post":
        p = rec["post"]
        conv = f"{s(p['team'])}/{s(p['channel'])}"
    elif kind == "direct_post":
        p = rec["direct_post"]
        members = p["channel_members"]
        if not isinstance(members, list):
            raise TypeError("channel_members is not a list")
        conv = "@" + ",".join(sorted(s(x) for x in members))
    else:
        return []
    root = _message(p, conv, source, "")
    replies = p.get("replies") or []
    if not isinstance(replies, list):
        raise TypeError("replies is not a list")
    return [root] + [_message(r, conv, source, root.message_id) for r in replies]


def derived_id(create_at: int, user: str) -> str:
    """The id of a post that has none (real bulk exports carry no post ids): spec §22.3."""
    return f"{create_at}-{hashlib.blake2s(user.encode(), digest_size=4).hexdigest()}"


def _message(p, conv: str, source: str, root_id: str) -> Message:
    if not isinstance(p, dict):
        raise TypeError("post is not an object")
    user = s(p["user"])
    create_at = int_ms(p["create_at"])
    edit_at = p.get("edit_at")
    atts = p.get("attachments") or []
    if not isinstance(atts, list):
        raise TypeError("attachments is not a list")
    return Message(
        platform=PLATFORM, conversation=conv, message_id=s(p.get("id")) or derived_id(create_at, user),
        author=user, time_ms=create_at, edited=bool(edit_at) and int_ms(edit_at) > 0,
        text=s(p.get("message")), source=source, reply_to=root_id,
        attachments=tuple(s(a.get("path")) for a in atts if isinstance(a, dict)),
    )


# ---- native output


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """Bulk-export JSON lines: a version record, then one ``post`` (or ``direct_post``) per
    message, in the order given.  Replies are written as posts of their own with their root's
    id in ``props.strongroom_root_id`` (bulk import nests replies in roots; nesting would need
    the whole thread in memory)."""
    out.write(b'{"type":"version","version":1}\n')
    for m in messages:
        post: dict = {"user": m.author, "message": m.text, "create_at": m.time_ms, "id": m.message_id}
        if m.edited:
            post["edit_at"] = m.time_ms
        if m.attachments:
            post["attachments"] = [{"path": a} for a in m.attachments]
        if m.reply_to:
            post["props"] = {"strongroom_root_id": m.reply_to}
        if m.conversation.startswith("@"):
            rec = {"type": "direct_post", "direct_post": {
                "channel_members": m.conversation[1:].split(","), **post}}
        else:
            team, _, channel = m.conversation.rpartition("/")
            rec = {"type": "post", "post": {"team": team, "channel": channel, **post}}
        out.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
