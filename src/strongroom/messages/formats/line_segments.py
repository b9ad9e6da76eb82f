"""JSON lines read piece by piece (spec §22.10; the contract is
:class:`strongroom.messages.model.SegmentReader`): the state is the unfinished last line, in the
state encoding of :mod:`.segments`."""

from __future__ import annotations

from typing import Callable

from ..model import Message
from . import common
from .common import RECORD_ERRORS, FileReport, Warn
from .segments import decode_state, encode_state


class LineSegments:
    """A :class:`~strongroom.messages.model.SegmentReader` for JSON lines: ``convert(line)``
    (without its line end; it raises one of common.RECORD_ERRORS for a bad line) gives each
    line's messages.

    State header keys: ``m`` the mode (``r`` reading, ``s`` skipping an over-long line up to its
    end, ``f`` finished) and ``b`` whether the first line is still under way (it may start with
    a byte order mark); the carry is the unfinished line."""

    def __init__(self, path: str, convert: Callable[[bytes], list[Message]]) -> None:
        self.path = path
        self.convert = convert

    def initial(self) -> bytes:
        return encode_state({"b": True, "m": "r"})

    def feed(self, state: bytes, data: bytes, final: bool, warn: Warn) -> tuple[list[Message], bytes]:
        st, carry = decode_state(state)
        if st["m"] == "f":
            return [], state
        report = FileReport(self.path, warn or common.log_warning)
        out: list[Message] = []
        limit = common.MAX_LINE
        text = carry + data
        if st["m"] == "s":
            nl = text.find(b"\n")
            text = b"" if nl < 0 else text[nl + 1:]
            if nl >= 0:
                st["m"], st["b"] = "r", False
        if st["m"] == "r":
            lines = text.split(b"\n")
            partial = lines.pop()
            if final and partial:
                lines.append(partial)
                partial = b""
            for line in lines:
                if len(line) > limit:
                    report.bad_record("a line", ValueError(f"longer than {limit} bytes"))
                else:
                    if st["b"]:
                        line = common.strip_bom(line)
                    try:
                        out.extend(self.convert(line.rstrip(b"\r\n")))
                    except RECORD_ERRORS as exc:
                        report.bad_record("a line", exc)
                st["b"] = False
            if len(partial) > limit:
                report.bad_record("a line", ValueError(f"longer than {limit} bytes"))
                st["m"], partial = "s", b""
            carry = partial
        report.close()
        if final:
            st, carry = {"m": "f"}, b""
        return out, encode_state(st, carry)
