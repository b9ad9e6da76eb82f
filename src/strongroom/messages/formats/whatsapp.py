"""WhatsApp "Export chat" text files (spec §22.6).

Line formats (the date and time follow the phone's locale)::

    iOS       [31/12/2024, 23:59:07] Name: text       ([12/31/24, 11:59:07 PM] …)
    Android   31/12/2024, 23:59 - Name: text          (12/31/24, 11:59 PM - …)

A line that does not start with a timestamp continues the previous message (multi-line
messages).  Lines without ``Name: `` are system notices and are not messages, nor are iOS
notices, whose text starts with U+200E (left-to-right mark); a leading U+200E is dropped from
the text of attachment messages.

Date order: the file is scanned until a day or month field above 12 decides it; a file that
never decides is month-first when it uses a 12-hour clock (AM/PM: US-style locales) and
day-first otherwise.  Times have no zone: the wall-clock time is read as UTC.

WhatsApp has no message ids.  The id is ``<time_ms>-<author hash>-<k>``: the message's time,
the first 8 hex digits of BLAKE2s-32 of the author, and k = how many earlier messages of the
same author carry the same timestamp in the file.  Deleted messages keep their line (a
placeholder), so ids of later messages stay stable across nights; the placeholders themselves
are not messages (the message disappears, which is what a deletion is)."""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
from typing import BinaryIO, Iterable, Iterator

from ..model import Export, ExportFiles, Message
from . import common
from .common import RECORD_ERRORS, Warn, guarded, head_test, lines, log_warning

PLATFORM = "whatsapp"

_SP = "[ \u00a0\u202f]"
_STAMP = (r"(\d{1,4})[./-](\d{1,2})[./-](\d{1,4}),?" + _SP + r"(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?"
          r"(?:" + _SP + r"?([AaPp])\.?" + _SP + r"?[Mm]\.?)?")
_IOS = re.compile(r"^\u200e?\[" + _STAMP + r"\]" + _SP + r"(.*)$", re.S)
_ANDROID = re.compile(r"^\u200e?" + _STAMP + _SP + r"-" + _SP + r"(.*)$", re.S)
_EDITED = ("<This message was edited>", "\u200e<This message was edited>")
_ATTACHED = re.compile(r"^\u200e?(?:<attached: (.+)>|(.+) \(file attached\))$")
_DELETED = frozenset({"This message was deleted", "You deleted this message",
                      "This message was deleted.", "You deleted this message."})


def match(line: str):
    return _IOS.match(line) or _ANDROID.match(line)


def _recognised(data: bytes) -> bool:
    first = data.split(b"\n", 1)[0].lstrip(b"\xef\xbb\xbf").rstrip(b"\r")
    try:
        return bool(match(first.decode("utf-8")))
    except UnicodeDecodeError:
        return False


class WhatsAppReader:
    platform = PLATFORM

    def find(self, files: ExportFiles) -> list[Export]:
        found = []
        for p in files.paths():
            if not p.endswith(".txt"):
                continue
            if head_test(files, p, "whatsapp 1", _recognised):
                found.append(Export(PLATFORM, p, (p,)))
        return found

    def messages(self, files: ExportFiles, export: Export, warn: Warn | None = None) -> Iterator[Message]:
        path = export.files[0]
        yield from guarded(path, warn or log_warning, lambda report: _read(files, path, report))

    def segment_reader(self, files: ExportFiles, export: Export, path: str, warn: Warn | None = None):
        """The file piece by piece (spec §22.10), its date order decided first by the first
        pass the whole-file reader makes (whatsapp_segments)."""
        if path != export.files[0]:
            return None
        from .whatsapp_segments import WhatsAppSegments  # it builds on this module
        quiet = common.FileReport(path, lambda w: None)  # the pieces report what is wrong
        try:
            day_first = _day_first(files, path, quiet)
        except common.FORMAT_ERRORS:  # unreadable content (a broken zip member): read it whole
            return None
        return WhatsAppSegments(path, day_first)


def conversation(path: str) -> str:
    """The chat's name, which only the file name holds: "WhatsApp Chat with X.txt" → "X";
    iOS's "_chat.txt" takes its folder's (or zip's) name, "WhatsApp Chat - X.zip" → "X"."""
    parts = path.split("/")
    name = parts[-1][:-4]
    if name == "_chat" and len(parts) > 1:
        name = parts[-2]
        if name.lower().endswith(".zip"):
            name = name[:-4]
    for prefix in ("WhatsApp Chat with ", "WhatsApp Chat - "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _day_first(files, path, report) -> bool:
    twelve_hour = False
    with files.open(path) as f:
        for _, raw in lines(f, report):
            m = match(raw.decode("utf-8", "replace"))
            if not m:
                continue
            a, b = int(m.group(1)), int(m.group(2))
            if len(m.group(1)) == 4:  # year first (yyyy-mm-dd): never day-first
                return False
            if a > 12:
                return True
            if b > 12:
                return False
            twelve_hour = twelve_hour or m.group(7) is not None
    return not twelve_hour


def _read(files, path, report) -> Iterator[Message]:
    chat = Chat(_day_first(files, path, report), conversation(path), path.rpartition("/")[2], report)
    with files.open(path) as f:
        for n, raw in lines(f, report):
            msg = chat.line(raw.decode("utf-8", "replace"), n)
            if msg is not None:
                yield msg
    msg = chat.end()
    if msg is not None:
        yield msg


#: Distinct authors counted within one run of records with the same time (a timestamp has
#: minutes on Android; a group has at most 1024 members): a record by yet another author is
#: skipped, so the counts (and a segment reader's state) stay bounded whatever the input.
MAX_AUTHORS_PER_TIME = 4096


class Chat:
    """Reading a chat file line by line: the rules both readers share (the whole-file reader
    keeps one for the file; the segment reader, whatsapp_segments, rebuilds one from its state
    for each piece).  ``line`` takes each line (decoded, without its end) and returns the
    message the line completes, if any; ``end`` the last one."""

    __slots__ = ("day_first", "conv", "source", "report", "counts", "last_time", "last_stamp", "pending")

    def __init__(self, day_first: bool, conv: str, source: str, report) -> None:
        self.day_first = day_first
        self.conv = conv
        self.source = source
        self.report = report
        # author -> their earlier records in the current run of records with time last_time
        # (the pending record always has that time: a record starts a run before it starts)
        self.counts: dict[str, int] = {}
        self.last_time: int | None = None
        self.last_stamp: tuple | None = None  # the groups of the last valid timestamp
        self.pending: list | None = None  # [time_ms, author, [text lines], size] being read

    def line(self, line: str, n: int | None = None) -> Message | None:
        """``n``: the line's number for warnings (None: not known)."""
        m = match(line)
        if m is None:
            self._extend(line, n)
            return None
        stamp = m.group(1, 2, 3, 4, 5, 6, 7)
        try:
            time_ms = self.last_time if stamp == self.last_stamp else _time(m, self.day_first)
            self.last_stamp = stamp
        except RECORD_ERRORS as exc:
            self.report.bad_record(f"line {n}" if n else "a line", exc)
            self._extend(line, n)
            return None
        msg = self.end()
        if time_ms != self.last_time:
            self.counts.clear()  # the occurrence counter only spans one timestamp
            self.last_time = time_ms
        author, sep, text = m.group(8).partition(": ")
        if sep and author.strip():
            self.pending = [time_ms, author.lstrip("\u200e"), [text], len(text)]
        return msg

    def _extend(self, line: str, n: int | None) -> None:
        pending = self.pending
        if pending is None or pending[3] < 0:
            return
        pending[3] += len(line) + 1
        if pending[3] > common.MAX_LINE:  # a runaway "message": memory stays bounded
            self.report.bad_record(f"message ending at line {n}" if n else "a message",
                                   ValueError(f"longer than {common.MAX_LINE} bytes"))
            pending[2], pending[3] = [], -1
        else:
            pending[2].append(line)

    def end(self) -> Message | None:
        """The pending record's message (None: no record, or not a message); none is pending after."""
        if self.pending is None:
            return None
        time_ms, author, parts, size = self.pending
        self.pending = None
        k = self.counts.get(author, 0)
        if k == 0 and len(self.counts) >= MAX_AUTHORS_PER_TIME:
            self.report.bad_record(f"message of {time_ms} ms", ValueError(
                f"more than {MAX_AUTHORS_PER_TIME} authors with the same time"))
            return None
        self.counts[author] = k + 1
        if size < 0:  # too long, reported: skipped, but it keeps its occurrence number
            return None
        text = "\n".join(parts)
        edited = False
        for suffix in _EDITED:
            if text.endswith(suffix):
                text, edited = text[: -len(suffix)].rstrip(" "), True
                break
        if text.startswith("\u200e"):
            # iOS marks notices ("X created group", the encryption notice, written under the
            # group's name) with a left-to-right mark; attachments and placeholders carry one too
            text = text[1:]
            if not (edited or _ATTACHED.match(parts[0]) or text in _DELETED):
                return None
        if text in _DELETED:
            return None
        atts = tuple(a.group(1) or a.group(2) for a in map(_ATTACHED.match, parts) if a)
        return Message(PLATFORM, self.conv, f"{time_ms}-{_author_hash(author)}-{k}", author, time_ms,
                       edited, text, self.source, attachments=atts)


@functools.lru_cache(maxsize=4096)
def _author_hash(author: str) -> str:
    return hashlib.blake2s(author.encode(), digest_size=4).hexdigest()


def _time(m, day_first: bool) -> int:
    a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if len(m.group(1)) == 4:
        y, month, day = a, b, y
    else:
        day, month = (a, b) if day_first else (b, a)
    if y < 100:
        y += 2000
    hour, minute, sec = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
    ampm = m.group(7)
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueError(f"hour {hour} with AM/PM")
        hour = hour % 12 + (12 if ampm in "Pp" else 0)
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(y, month)[1] and hour < 24
            and minute < 60 and sec < 60):
        raise ValueError("not a valid date and time")
    return calendar.timegm((y, month, day, hour, minute, sec)) * 1000


# ---- native output


def write(messages: Iterable[Message], out: BinaryIO) -> None:
    """iOS-style lines ``[dd/mm/yyyy, hh:mm:ss] Name: text`` (UTC, unambiguous: 4-digit year
    and a day-first order that any line with day > 12 confirms), edited marker kept."""
    import datetime as dt
    for m in messages:
        d = dt.datetime.fromtimestamp(m.time_ms // 1000, dt.timezone.utc)
        text = m.text + (" <This message was edited>" if m.edited else "")
        out.write(f"[{d:%d/%m/%Y, %H:%M:%S}] {m.author}: {text}\n".encode())
