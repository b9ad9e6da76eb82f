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
and the bytes of an unfinished line (encoded as lines of text, ``_encode``: this reader's
per-piece cost is mostly its state's, and a JSON round trip cost more than the line's parse).

``pieces`` cuts a file's bytes before some of the lines that start a record (where the bytes
say: the same records give the same cuts every night), so a piece is a few messages and a
multi-line message is carried in the state only when it is longer than a piece.  Pieces of
about four records cost less per record than one (the memo's and the state's fixed cost per
piece is about a record's parse) while an edit makes only a few more records parse again.
"""

from __future__ import annotations

import re
from zlib import crc32
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
_CUT = re.compile(rb"\n(?=((?:\xe2\x80\x8e)?(?:\[" + _STAMP + rb"\]" + _SP + rb"|" + _STAMP + _SP + rb"-" + _SP + rb")))")
#: A record start cuts a piece when the CRC-32 of its timestamp is 0 modulo this: pieces of
#: about this many records, cut where the bytes say (the same records, the same cuts).
GROUP = 4


def pieces(blocks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """(piece, final) for the concatenated ``blocks``: each piece ends just before a line that
    starts a record whose timestamp's CRC-32 is 0 modulo GROUP (or after MAX_PIECE bytes); the
    last piece is final."""
    buf = b""
    for block in blocks:
        buf = buf + block if buf else bytes(block)
        cut = 0
        for m in _CUT.finditer(buf):  # the rest after the last cut is scanned again: it is
            if crc32(m.group(1)) % GROUP:  # a few messages, and a cut may straddle two blocks
                continue
            end = m.start() + 1
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
    """A :class:`~strongroom.messages.model.SegmentReader` for one chat file (the state's
    encoding: ``_encode``)."""

    def __init__(self, path: str, day_first: bool) -> None:
        self.path = path
        self.day_first = day_first
        self.conv = conversation(path)
        self.source = path.rpartition("/")[2]
        # (the state feed returned last, what it encodes): a caller that feeds the state it got
        # back (pieces parsed in a row) costs no decoding; any other state is decoded
        self._last: tuple | None = None

    # the cutting a caller may use (catalog_memo): a few records a piece
    pieces = staticmethod(pieces)

    def initial(self) -> bytes:
        return _encode(self.day_first, True, "r", None, None, {}, None, b"")

    def feed(self, state: bytes, data: bytes, final: bool, warn: Warn) -> tuple[list[Message], bytes]:
        last = self._last
        self._last = None
        report = FileReport(self.path, warn or common.log_warning)
        if last is not None and last[0] is state:
            _, chat, first, mode, carry = last
            chat.report = report
        else:
            day_first, first, mode, stamp, last_time, counts, pending, carry = _decode(state)
            if mode == "f":
                return [], state
            chat = Chat(day_first, self.conv, self.source, report)
            chat.counts, chat.last_time, chat.last_stamp, chat.pending = counts, last_time, stamp, pending
        out: list[Message] = []
        limit = common.MAX_LINE
        text = carry + data if carry else bytes(data)
        if mode == "s":  # the rest of an over-long line, up to its end
            nl = text.find(b"\n")
            text = b"" if nl < 0 else text[nl + 1:]
            if nl >= 0:
                mode = "r"
        if mode == "r":
            lines = text.split(b"\n")
            partial = lines.pop()
            if final and partial:
                lines.append(partial)
                partial = b""
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
            if len(partial) > limit:
                report.bad_record("a line", ValueError(f"longer than {limit} bytes"))
                mode, first, partial = "s", False, b""
            carry = partial
        if final:
            msg = chat.end()
            if msg is not None:
                out.append(msg)
            report.close()
            return out, _FINISHED
        report.close()
        state = _encode(chat.day_first, first, mode, chat.last_stamp, chat.last_time, chat.counts, chat.pending,
                        carry)
        self._last = (state, chat, first, mode, carry)
        return out, state


def _encode(day_first: bool, first: bool, mode: str, stamp: tuple | None, last_time: int | None,
            counts: dict[str, int], pending: list | None, carry: bytes) -> bytes:
    """The state: UTF-8 lines, then the carry (the unfinished line)::

        W<version> <D|M day-first or not><1|0 first line to come><r|s mode> <len(carry)>
        the last valid timestamp's groups joined by "," (None as ""), or "" for none
        its time in ms, or ""
        the number of authors counted in this time's run, then author and count, a line each
        (the record being read, if any) its time, its author, its size (-1: too long, its
        text dropped), then its text lines

    Nothing but the carry can hold a line end (texts and authors come from lines), so the
    fields need no escaping; the insertion order of ``counts`` follows the bytes read, so equal
    prefixes give equal states."""
    out = [f"W{_VERSION} {'D' if day_first else 'M'}{'1' if first else '0'}{mode} {len(carry)}",
           "" if stamp is None else ",".join(g or "" for g in stamp),
           "" if last_time is None else str(last_time), str(len(counts))]
    for author, k in counts.items():
        out += (author, str(k))
    if pending is not None:
        out += (str(pending[0]), pending[1], str(pending[3]))
        out += pending[2]
    return "\n".join(out).encode() + b"\0" + carry


_FINISHED = f"W{_VERSION} Mff 0".encode() + b"\0"  # after the last piece: nothing more comes


def _decode(state: bytes) -> tuple:
    end = state.find(b"\n", 0, 64)
    first_line = state[:end] if end >= 0 else state[:state.index(b"\0")]  # (only a finished state has one line)
    version, flags, size = first_line.decode().split(" ")
    if version != f"W{_VERSION}":
        raise ValueError("a WhatsApp segment reader state of another version")
    cut = len(state) - int(size)
    carry = state[cut:]
    day_first, first, mode = flags[0] == "D", flags[1] == "1", flags[2]
    if mode == "f":
        return day_first, first, mode, None, None, {}, None, carry
    lines = state[:cut - 1].decode().split("\n")
    stamp = tuple(g or None for g in lines[1].split(",")) if lines[1] else None
    last_time = int(lines[2]) if lines[2] else None
    n = int(lines[3])
    counts = {lines[i]: int(lines[i + 1]) for i in range(4, 4 + 2 * n, 2)}
    rest = lines[4 + 2 * n:]
    pending = [int(rest[0]), rest[1], rest[3:], int(rest[2])] if rest else None
    return day_first, first, mode, stamp, last_time, counts, pending, carry
