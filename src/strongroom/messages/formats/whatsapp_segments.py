"""A WhatsApp chat file read piece by piece (spec §22.10): the segment reader and where to cut.

The date order (day/month or month/day) is a property of the whole file (spec §22.6): it is
decided before the first piece by the same first pass the whole-file reader makes (it stops at
the first timestamp that decides, usually within the first lines) and written into the initial
state, so every state, and every piece result a caller keeps under a state, belongs to one
order.  A file whose order flips (its only deciding line deleted) shares no state with its
previous version.

The state carries what the whole-file reader keeps between lines (whatsapp.Chat): the last
timestamp and its time, the occurrence counts of the current time, the record being read (its
time, author and text lines: a message continues over the following lines until the next
timestamp), whether the first line (which may start with a byte order mark) is still to come,
and the bytes of an unfinished line.  Encoded as compact JSON with sorted keys, ``\\0``, the
unfinished line.

``pieces`` cuts a file's bytes before the lines that start a record, so a piece is about one
message and a multi-line message is carried in the state only when it is longer than a piece.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Iterator

from ..model import Message
from . import common
from .common import FileReport, Warn
from .whatsapp import Chat, conversation

#: The version of this state encoding, in every state: states of other reader code never match.
_VERSION = 1
#: A piece is cut here when no record starts (a very long multi-line message).
MAX_PIECE = 1024 * 1024

_SP = rb"(?: |\xc2\xa0|\xe2\x80\xaf)"
_STAMP = (rb"[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{1,4},?" + _SP + rb"[0-9]{1,2}[:.][0-9]{2}(?:[:.][0-9]{2})?"
          rb"(?:" + _SP + rb"?[AaPp]\.?" + _SP + rb"?[Mm]\.?)?")
#: A newline before a line that starts a record (the timestamps of whatsapp._IOS and _ANDROID,
#: ASCII digits only: a line this misses only makes a piece longer).
_CUT = re.compile(rb"\n(?=(?:\xe2\x80\x8e)?(?:\[" + _STAMP + rb"\]" + _SP + rb"|" + _STAMP + _SP + rb"-" + _SP + rb"))")


def pieces(blocks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """(piece, final) for the concatenated ``blocks``: each piece ends just before a line that
    starts a record (or after MAX_PIECE bytes); the last piece (possibly empty) is final."""
    buf = b""
    for block in blocks:
        buf = buf + block if buf else bytes(block)
        cut = 0
        for m in _CUT.finditer(buf):  # the rest after the last cut is scanned again: it is
            end = m.start() + 1       # about one message, and a cut may straddle two blocks
            yield from _bounded(buf[cut:end])
            cut = end
        buf = buf[cut:]
        while len(buf) > MAX_PIECE:
            yield buf[:MAX_PIECE], False
            buf = buf[MAX_PIECE:]
    yield buf, True


def _bounded(piece: bytes) -> Iterator[tuple[bytes, bool]]:
    for i in range(0, len(piece), MAX_PIECE):
        yield piece[i:i + MAX_PIECE], False


class WhatsAppSegments:
    """A :class:`~strongroom.messages.model.SegmentReader` for one chat file.

    State header keys: ``v`` the encoding's version, ``d`` day-first (the first pass's
    decision), ``m`` the mode (``r`` reading, ``s`` skipping an over-long line up to its end,
    ``f`` finished), ``b`` whether the first line is still to come, ``s`` the groups of the last
    valid timestamp and ``t`` its time (ms), ``c`` author → records so far in the run of records
    with time ``t``, ``p`` the record being read ``[time, author, [lines], size]`` (size -1: too
    long, its text dropped) or null; the carry is the unfinished line."""

    def __init__(self, path: str, day_first: bool) -> None:
        self.path = path
        self.day_first = day_first
        self.conv = conversation(path)
        self.source = path.rpartition("/")[2]

    # the cutting a caller may use (catalog_memo): a piece per record
    pieces = staticmethod(pieces)

    def initial(self) -> bytes:
        return _encode({"b": True, "c": {}, "d": self.day_first, "m": "r", "p": None, "s": None,
                        "t": None, "v": _VERSION}, b"")

    def feed(self, state: bytes, data: bytes, final: bool, warn: Warn) -> tuple[list[Message], bytes]:
        st, carry = _decode(state)
        if st["m"] == "f":
            return [], state
        report = FileReport(self.path, warn or common.log_warning)
        chat = Chat(st["d"], self.conv, self.source, report)
        chat.counts, chat.last_time, chat.pending = st["c"], st["t"], st["p"]
        chat.last_stamp = tuple(st["s"]) if st["s"] is not None else None
        out: list[Message] = []
        limit = common.MAX_LINE
        text = carry + data if carry else bytes(data)
        if st["m"] == "s":  # the rest of an over-long line, up to its end
            nl = text.find(b"\n")
            text = b"" if nl < 0 else text[nl + 1:]
            if nl >= 0:
                st["m"] = "r"
        if st["m"] == "r":
            lines = text.split(b"\n")
            partial = lines.pop()
            if final and partial:
                lines.append(partial)
                partial = b""
            first = st["b"]
            for raw in lines:
                if len(raw) > limit:  # the whole-file reader's lines() skips it alike
                    report.bad_record("a line", ValueError(f"longer than {limit} bytes"))
                else:
                    if first:
                        raw = common.strip_bom(raw)
                    msg = chat.line(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
                    if msg is not None:
                        out.append(msg)
                first = False
            st["b"] = first
            if len(partial) > limit:
                report.bad_record("a line", ValueError(f"longer than {limit} bytes"))
                st["m"], st["b"], partial = "s", False, b""
            carry = partial
        if final:
            msg = chat.end()
            if msg is not None:
                out.append(msg)
            st, carry = {"m": "f", "v": _VERSION}, b""
        else:
            st["c"], st["t"], st["p"], st["s"] = chat.counts, chat.last_time, chat.pending, chat.last_stamp
        report.close()
        return out, _encode(st, carry)


def _encode(header: dict, carry: bytes) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() \
        + b"\0" + carry


def _decode(state: bytes) -> tuple[dict, bytes]:
    head, sep, carry = state.partition(b"\0")
    if not sep:
        raise ValueError("not a WhatsApp segment reader state")
    st = json.loads(head)
    if st.get("v") != _VERSION:
        raise ValueError("a WhatsApp segment reader state of another version")
    return st, carry
