"""Reading one export file piece by piece, with a small deterministic state between pieces
(spec §22.10; the contract is :class:`strongroom.messages.model.SegmentReader`).

    JsonSegments(path, routes, convert)   a JSON document: records found by their ijson path
    (line_segments.LineSegments           JSON lines, one record per line, shares the state encoding)

Both keep, between pieces, only what the bytes so far determine: where the scan stands in the
document (the open containers and keys on the way to the records), the context values captured
from the stream (a chat's name, a guild), and the bytes of an unfinished token or record.  The
state is canonical (compact sorted JSON, ``\\0``, the carried bytes), so the same prefix gives
the same state whatever pieces it came in — the key a caller caches a piece's result under.

The JSON scanner is fast where exports are pretty-printed: a record that opens on a line of
its own at indentation ``k`` is guessed to end at the next line of exactly ``k`` blanks and the
closing bracket, and ``json.loads`` of that span decides (a JSON value has exactly one end, so
a span that parses whole is the record).  Other records (one-line, compact) fall back to a
bracket scan over strings and brackets.  Parsing gives what ijson's ``use_float=True`` gives:
int for integers, float otherwise.  Content errors never raise (spec §22.1)."""

from __future__ import annotations

import json
import re
from typing import Callable

from ..model import Message
from . import common
from .common import RECORD_ERRORS, FileReport, Warn

#: Changes whenever the state encoding, or the messages ``feed`` gives for a state, do: a cache
#: keyed by states must key by it too (spec §22.10).
STATE_VERSION = 3

#: What a route does with the value at its path.
DESCEND = "descend"  # open the container and route its members (a path on the way to records)
RECORD = "record"  # a record: parsed whole and converted to messages
CAPTURE = "capture"  # a context value: parsed whole and kept in the state
# Any other path: the value is parsed and dropped (skipped).

#: ``{ijson prefix: (DESCEND, names of captures to forget on entry) | (RECORD,) |
#: (CAPTURE, name, reduce)}``
Routes = dict[str, tuple]
#: record, captures → messages (raises one of common.RECORD_ERRORS for a record of the wrong shape)
Convert = Callable[[object, dict], "list[Message]"]

#: Containers kept open in the state at once (a value that leads to no record is read token by
#: token when it spans pieces; below this depth it is skipped by its brackets alone).
MAX_DEPTH = 256
_BOM = b"\xef\xbb\xbf"
_WS = re.compile(rb"[ \t\n\r]*")
_COMMA = re.compile(rb"[ \t\n\r]*,[ \t\n\r]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
#: the rest of a string whose opening quote came before (skip mode)
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_STRING_TAIL = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_BRACKETS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|["{}\[\]]', re.S)
_SCALAR_RUN = re.compile(rb"[-+.0-9eE]+|[a-z]+")
_SCALAR = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")
#: At most this many blanks after a newline, right before a position, are a record's indentation:
#: carried with the record (or at a piece's end) so the end guess works across pieces.
_MAX_INDENT = 256
_OPEN, _CLOSE = ord("{"), ord("}")
_OPEN_ARRAY, _CLOSE_ARRAY = ord("["), ord("]")
_QUOTE = ord('"')
_BLANKS = b" \t\n\r"  # JSON's whitespace (_WS)


class Broken(ValueError):
    """The document stops parsing here."""


class _TooDeep(ValueError):
    """A record nested deeper than json.loads' recursion allows: skipped, the file goes on."""


def _no_constants(name: str):
    raise Broken(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
#: _value_end found a value's end without parsing it
_UNPARSED = object()


def _parse(span: bytes):
    """The JSON value ``span`` (UTF-8, strict, nothing after it), numbers as ijson's use_float
    gives them."""
    text = span.decode("utf-8")
    try:
        value, end = _DECODER.raw_decode(text)
    except RecursionError:
        raise _TooDeep("nested too deeply") from None
    if end != len(text):
        raise ValueError("extra data after a JSON value")
    # (the membership tests first: they are much cheaper than the search, and rarely true)
    if ((b"\\ud" in span or b"\\uD" in span) and _LONE_SURROGATE_ESCAPE.search(span)) or b"\\\\u" in span:
        value = _mend(value)
    return value


#: An escaped surrogate without its other half (pairs, common in Slack's all-ASCII files, are
#: joined by json.loads; a lone one would make a string that cannot be encoded as UTF-8).  An
#: escaped backslash before "u" could hide one from this test: that case is mended too.
_LONE_SURROGATE_ESCAPE = re.compile(
    rb"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD])[c-fC-F])")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _mend(value):
    """``value`` with each lone surrogate replaced by "?", as ijson's C backend reads a lone
    high surrogate (a low one stops it; here it reads alike)."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("?", value)
    if isinstance(value, list):
        return [_mend(v) for v in value]
    if isinstance(value, dict):
        return {_mend(k): _mend(v) for k, v in value.items()}
    return value


#: One encoder and decoder for every state (``json.dumps``/``loads`` with options build new ones
#: per call, which cost more than encoding a state: this runs once per piece parsed).
_STATE_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False)
_STATE_DECODER = json.JSONDecoder()


def encode_state(header: dict, carry: bytes = b"") -> bytes:
    return _STATE_ENCODER.encode(header).encode() + b"\0" + carry


def decode_state(state: bytes) -> tuple[dict, bytes]:
    head, sep, carry = state.partition(b"\0")
    if not sep:
        raise ValueError("not a segment reader state")
    return _STATE_DECODER.decode(head.decode()), carry


class JsonSegments:
    """A :class:`~strongroom.messages.model.SegmentReader` for one JSON document whose records
    sit at the ijson paths ``routes`` names.

    State header keys: ``t`` the top level (``b`` nothing decided yet: a byte order mark may be
    under way, ``v`` a value expected, ``e`` the value ended), ``k`` the open containers
    ``[bracket, phase, key]``, ``c`` the captures, ``m`` the mode (``r`` reading, ``s`` skipping
    an over-long value, ``x`` broken: nothing more comes from this file, ``f`` finished), and in
    skip mode ``d`` the bracket depth and ``q`` whether a string is open; ``p`` (with an unfinished
    record in the carry) how far its bracket scan got: ``[offset, depth, in a string]``."""

    def __init__(self, path: str, routes: Routes, convert: Convert) -> None:
        self.path = path
        self.routes = routes
        self.convert = convert

    def initial(self) -> bytes:
        return encode_state({"c": {}, "k": [], "m": "r", "t": "b"})

    # The header a feed ended with, as encoded, decoded and with the paths of its open containers:
    # the next piece usually starts from it (a state is encoded and decoded once per piece, which
    # cost about as much as parsing the record in it).
    _last_head: bytes = b""
    _last_header: dict | None = None
    _last_paths: list[str] = []

    def _decode(self, state: bytes) -> tuple[dict, bytes, list[str] | None]:
        head, sep, carry = state.partition(b"\0")
        if sep and head == self._last_head and self._last_header is not None:
            return _copy_header(self._last_header), carry, list(self._last_paths)
        st, carry = decode_state(state)
        return st, carry, None

    def _encode(self, st: dict, carry: bytes, paths: list[str] | None) -> bytes:
        if st == self._last_header:
            return self._last_head + b"\0" + carry
        state = encode_state(st, carry)
        if paths is not None:
            self._last_head = state[:len(state) - len(carry) - 1]
            self._last_header, self._last_paths = _copy_header(st), list(paths)
        return state

    def feed(self, state: bytes, data: bytes, final: bool, warn: Warn) -> tuple[list[Message], bytes]:
        whole = self._whole_record(state, data, final)
        if whole is not None:
            return whole, state
        st, carry, paths = self._decode(state)
        if st["m"] in ("x", "f"):
            return [], state
        out: list[Message] = []
        report = FileReport(self.path, warn or common.log_warning)
        scan = _Scan(self, st, report, out, paths)
        try:
            text = carry + data
            carry = b""
            if st["m"] == "s":
                text, carry = scan.skip(text)
            if st["m"] == "r":
                carry = scan.run(text, final)
            if final:
                if st["m"] == "s" or carry.strip():
                    raise Broken("the document ends inside a value")
                if st["k"] or st["t"] != "e":
                    raise Broken("the document ends early")
        except Broken as exc:
            report.broken(exc)
            st, carry = {"m": "x"}, b""
        except RECORD_ERRORS as exc:  # invalid UTF-8 or JSON in the structure around records
            report.broken(exc)
            st, carry = {"m": "x"}, b""
        report.close()
        if final and st["m"] != "x":
            st, carry = {"m": "f"}, b""
        return out, self._encode(st, carry, scan.paths if st.get("m") in ("r", "s") else None)


    def _whole_record(self, state: bytes, data: bytes, final: bool) -> list[Message] | None:
        """The messages of a piece that is one whole record of the array being read, then its
        comma — what a pretty-printed export is cut into (catalog_memo) — read without the scan;
        None when the piece is anything else, or its record is not one the scan would convert
        without a word (then the scan reads it, and reports). From a state that carries nothing,
        after an element of that array, such a piece leaves the same state: the state is given
        back as it came.

        (A record parsed whole is the record the scan finds: a JSON object ends exactly once.)"""
        if final or type(data) is not bytes or not data.endswith(b",") or not state.endswith(b"\0"):
            return None
        header = self._last_header
        if header is None or len(state) != len(self._last_head) + 1 or not state.startswith(self._last_head):
            return None  # a state this reader did not just end with (decoding it costs more)
        frames = header["k"] if header.get("m") == "r" and header.get("t") == "v" else None
        if not frames or frames[-1][0] != "[" or frames[-1][1] != "v":
            return None
        route = self.routes.get(_child(self._last_paths[-1], frames[-1]))
        if route is None or route[0] != RECORD:
            return None
        body = data.strip(_BLANKS)[:-1].rstrip(_BLANKS)
        if body[:1] != b"{" or body[-1:] != b"}" or len(body) > common.MAX_LINE:
            return None
        try:
            return self.convert(_parse(body), header["c"])
        except RECORD_ERRORS:  # ValueError includes broken JSON and _TooDeep
            return None


def _copy_header(st: dict) -> dict:
    """A copy of a state header that a scan may change without changing ``st``: the scan mutates
    only the container frames and the captures dict (captured values are replaced, never
    changed)."""
    copy = dict(st)
    if "k" in st:
        copy["k"] = [frame[:] for frame in st["k"]]
    if "c" in st:
        copy["c"] = dict(st["c"])
    if "p" in st:
        copy["p"] = list(st["p"])
    return copy


class _Scan:
    """One feed's work on a state (mutated in place)."""

    def __init__(self, reader: JsonSegments, st: dict, report: FileReport, out: list[Message],
                 paths: list[str] | None = None) -> None:
        self.routes = reader.routes
        self.convert = reader.convert
        self.st = st
        self.report = report
        self.out = out
        self.limit = common.MAX_LINE
        #: how far the bracket scan of the value the carry begins with got (see _value_end)
        self.resume: list | None = st.pop("p", None)
        if paths is None:  # the ijson prefix of each open container: a function of the stack
            paths = []
            for i, frame in enumerate(st["k"]):
                paths.append(_child(paths[-1], st["k"][i - 1]) if i else "")
        self.paths: list[str] = paths

    # ---- the reading mode

    def run(self, text: bytes, final: bool) -> bytes:
        """Consume ``text``; the bytes to carry into the next piece."""
        st = self.st
        pos = 0
        if st["t"] == "b":
            if len(text) < 3 and _BOM.startswith(text) and not final:
                return text
            if text.startswith(_BOM):
                pos = 3
            st["t"] = "v"
        stack = st["k"]
        n = len(text)
        while True:
            pos = _WS.match(text, pos).end()
            if pos >= n:
                return self._pending(text, n)
            c = text[pos]
            if not stack:
                if st["t"] == "e":
                    raise Broken("data after the end of the document")
                end = self._value(text, pos, final, "")
                if end is None or end < 0:
                    return self._unfinished(text, pos, end)
                pos = end
                continue
            frame = stack[-1]
            phase = frame[1]
            if frame[0] == "{":
                if phase == ",":
                    if c == 44:  # ,
                        frame[1] = "k"
                    elif c == _CLOSE:
                        self._close()
                    else:
                        raise Broken("expected ',' or '}' after an object member")
                    pos += 1
                elif phase == ":":
                    if c != 58:  # :
                        raise Broken("expected ':' after an object key")
                    frame[1] = "v"
                    pos += 1
                elif phase == "v":
                    end = self._value(text, pos, final, _child(self.paths[-1], frame))
                    if end is None or end < 0:
                        return self._unfinished(text, pos, end)
                    pos = end
                else:  # "k0" (a key or '}') or "k" (a key)
                    if c == _CLOSE and phase == "k0":
                        self._close()
                        pos += 1
                        continue
                    if c != _QUOTE:
                        raise Broken("expected an object key")
                    m = _STRING.match(text, pos)
                    if m is None:
                        if final:
                            raise Broken("the document ends inside a key")
                        return self._pending(text, pos)
                    frame[2] = _parse(m.group())
                    frame[1] = ":"
                    pos = m.end()
            else:
                if phase == ",":
                    if c == 44:
                        frame[1] = "v"
                    elif c == _CLOSE_ARRAY:
                        self._close()
                    else:
                        raise Broken("expected ',' or ']' after an array element")
                    pos += 1
                else:  # "v0" (a value or ']') or "v"
                    if c == _CLOSE_ARRAY and phase == "v0":
                        self._close()
                        pos += 1
                        continue
                    item = _child(self.paths[-1], frame)
                    while True:  # the hot loop: element, comma, element...
                        end = self._value(text, pos, final, item)
                        if end is None or end < 0:
                            return self._unfinished(text, pos, end)
                        m = _COMMA.match(text, end)
                        if m is None or m.end() == n or stack[-1] is not frame:
                            pos = end
                            break
                        frame[1] = "v"
                        pos = m.end()

    def _pending(self, text: bytes, pos: int) -> bytes:
        """The carry for an unfinished token at ``pos``: the token and its line's indentation."""
        nl = text.rfind(b"\n", max(0, pos - _MAX_INDENT - 1), pos)
        if nl >= 0 and not text[nl + 1:pos].strip(b" \t"):
            return text[nl:]
        return text[pos:]

    def _unfinished(self, text: bytes, pos: int, end: int | None) -> bytes:
        """The carry when the value at ``pos`` goes on past ``text``: the value so far, or (an
        over-long value, ``end`` -1) what skipping it needs."""
        if end is None:
            return self._pending(text, pos)
        rest, carry = self.skip(text[pos:])
        if rest is not None:  # cannot happen: the value was found unfinished
            raise Broken("inconsistent value end")
        return carry

    def _close(self) -> None:
        self.st["k"].pop()
        self.paths.pop()
        self._after_value()

    def _after_value(self) -> None:
        stack = self.st["k"]
        if stack:
            stack[-1][1] = ","
        else:
            self.st["t"] = "e"

    def _value(self, text: bytes, pos: int, final: bool, path: str) -> int | None:
        """Handle the value at ``pos`` (path ``path``): its end, or None if it is unfinished."""
        resume, self.resume = self.resume, None  # it belongs to the first value of the piece
        route = self.routes.get(path)
        c = text[pos]
        if (c == _OPEN or c == _OPEN_ARRAY) and (route is None or route[0] == DESCEND):
            if route is None:
                # A value that leads to no record: dropped whole when it ends in this text
                # (parsed all the same: a document that stops parsing stops here too), else
                # read token by token, so it is never carried whatever its size.
                end, value, _ = _value_end(text, pos, final)
                if end is not None:
                    if value is _UNPARSED:
                        try:
                            _parse(text[pos:end])
                        except _TooDeep:
                            pass
                        except ValueError as exc:
                            raise Broken(_first_line(exc)) from None
                    self._after_value()
                    return end
                if len(self.st["k"]) >= MAX_DEPTH:  # bound the state: skip it by its brackets
                    self.st["m"], self.st["d"], self.st["q"] = "s", 0, False
                    return -1
            self.st["k"].append(["{" if c == _OPEN else "[", "k0" if c == _OPEN else "v0", None])
            self.paths.append(path)
            for name in route[1] if route is not None else ():
                self.st["c"].pop(name, None)
            return pos + 1
        end, value, progress = _value_end(text, pos, final, resume)
        action = route[0] if route is not None and route[0] != DESCEND else None
        if end is None:
            if len(text) - pos > self.limit:
                if c != _OPEN and c != _OPEN_ARRAY and c != _QUOTE:
                    raise Broken(f"a number longer than {self.limit} bytes")
                if action is not None:
                    self._too_long(action)
                self.st["m"], self.st["d"], self.st["q"] = "s", 0, False
                return -1
            if progress is not None:
                self.st["p"] = progress
            return None
        if end - pos > self.limit:
            if action is not None:
                self._too_long(action)
            self._after_value()
            return end
        try:
            if value is _UNPARSED:
                value = _parse(text[pos:end])
        except _TooDeep as exc:
            if action is not None:
                self.report.bad_record("message" if action == RECORD else path, exc)
            self._after_value()
            return end
        except ValueError as exc:
            raise Broken(_first_line(exc)) from None
        if action == RECORD:
            try:
                self.out.extend(self.convert(value, self.st["c"]))
            except RECORD_ERRORS as exc:
                self.report.bad_record("message", exc)
        elif action == CAPTURE:
            self.st["c"][route[1]] = route[2](value)
        self._after_value()
        return end

    def _too_long(self, action: str) -> None:
        what = "message" if action == RECORD else "context value"
        self.report.bad_record(what, ValueError(f"longer than {self.limit} bytes"))

    # ---- skipping an over-long value without keeping it

    def skip(self, text: bytes) -> tuple[bytes | None, bytes]:
        """Scan ``text`` for the end of the value being skipped: (what follows it, to read
        normally, ``b""``), or (None, the carry) while it goes on.  The state keeps the bracket
        depth and whether a string is open; the carry is at most one byte (a backslash whose
        escaped byte is still to come)."""
        st = self.st
        end, stop, st["d"], st["q"] = _scan(text, 0, st["d"], st["q"])
        if end is None:
            return None, text[stop:]
        del st["d"], st["q"]
        st["m"] = "r"
        self._after_value()
        return text[end:], b""


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else "invalid JSON"


def _child(parent: str, frame: list) -> str:
    """The ijson path of the value the container ``frame`` (at ``parent``) expects next."""
    name = "item" if frame[0] == "[" else frame[2]
    return f"{parent}.{name}" if parent else name


def _value_end(text: bytes, pos: int, final: bool,
               resume: list | None = None) -> tuple[int | None, object, list | None]:
    """The end of the JSON value starting at ``pos`` (None if ``text`` ends before it does);
    the value if finding the end parsed it (else _UNPARSED: not validated yet); and for an
    unfinished container, how far the bracket scan got (``[offset from pos, depth, in a
    string]``), which ``resume`` takes back in the next piece so a long value is scanned once."""
    c = text[pos]
    n = len(text)
    if c == _OPEN or c == _OPEN_ARRAY:
        closer = b"}" if c == _OPEN else b"]"
        eol = text.find(b"\n", pos)
        if eol < 0:
            eol = n
        line = text[pos:eol]
        span = None
        if not line[1:].strip():
            # pretty-printed: the bracket closes on the next line of exactly this indentation
            ls = text.rfind(b"\n", 0, pos) + 1
            indent = text[ls:pos]
            if not indent.strip(b" \t"):
                start = max(eol, pos + resume[0] - len(indent) - 2) if resume else eol
                end = text.find(b"\n" + indent + closer, start)
                if end >= 0:
                    span = text[pos:end + len(indent) + 2]
        elif eol < n or final:
            # one record per line: it ends where its line does (before a comma)
            span = line.rstrip(b" \t\r,")
            if span[-1] != closer[0]:
                span = None
        if span is not None:
            try:
                return pos + len(span), _parse(span), None
            except ValueError:  # includes invalid UTF-8 and _TooDeep: the bracket scan decides
                pass
        if resume:
            end, stop, depth, in_string = _scan(text, pos + resume[0], resume[1], resume[2])
        else:
            end, stop, depth, in_string = _scan(text, pos, 0, False)
        if end is None and final:
            raise Broken("the document ends inside a value")
        return end, _UNPARSED, None if end is not None else [stop - pos, depth, in_string]
    if c == _QUOTE:
        m = _STRING.match(text, pos)
        if m is None:
            if final:
                raise Broken("the document ends inside a string")
            return None, _UNPARSED, None
        return m.end(), _UNPARSED, None
    m = _SCALAR_RUN.match(text, pos)
    if m is None:
        raise Broken(f"unexpected byte {bytes([c])!r}")
    if m.end() == n and not final:
        return None, _UNPARSED, None
    if _SCALAR.fullmatch(text, pos, m.end()) is None:
        raise Broken(f"not a JSON value: {text[pos:m.end()][:40]!r}")
    return m.end(), _UNPARSED, None


def _scan(text: bytes, pos: int, depth: int, in_string: bool) -> tuple[int | None, int, int, bool]:
    """Follow brackets and strings from ``pos`` (``depth`` brackets open, inside a string or
    not): (the end of the value when its depth returns to 0, else None; where the scan stopped,
    before a final backslash inside a string; the depth there; whether a string is open)."""
    n = len(text)
    while True:
        if in_string:
            m = _STRING_REST.match(text, pos)
            if m is None:
                return None, _STRING_TAIL.match(text, pos).end(), depth, True
            pos = m.end()
            in_string = False
            if depth == 0:
                return pos, pos, 0, False
            continue
        m = _BRACKETS.search(text, pos)
        if m is None:
            return None, n, depth, False
        pos = m.end()
        b = text[m.start()]
        if b == _QUOTE:
            if pos - m.start() == 1:  # an opening quote whose close is not here yet
                in_string = True
            elif depth == 0:
                return pos, pos, 0, False
        elif b == _OPEN or b == _OPEN_ARRAY:
            depth += 1
        else:
            depth -= 1
            if depth <= 0:
                return pos, pos, 0, False
