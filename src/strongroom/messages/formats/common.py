"""What every reader shares: sniffing the first bytes, streaming JSON, skipping bad records.

The rule for malformed input (spec §22.1): a file that cannot be parsed is skipped from the
point of the error on with one warning; a record of the wrong shape is skipped with a warning
(at most ``MAX_RECORD_WARNINGS`` per file, then one summary line); nothing raises out of a
reader for bad content, so a broken export never stops a backup.  Errors of the underlying
file tree (storage, I/O) are not ours to judge and propagate."""

from __future__ import annotations

import datetime as _dt
import io
import logging
import posixpath
import zipfile
import zlib
from typing import Callable, Iterable, Iterator

import ijson

from ..model import ExportFiles, Message

Warn = Callable[[str], None]

_log = logging.getLogger("strongroom.messages")

#: How much of a file recognition looks at.
HEAD_BYTES = 16 * 1024
#: A line (JSONL record, WhatsApp line) longer than this is skipped with a warning.
MAX_LINE = 64 * 1024 * 1024
MAX_RECORD_WARNINGS = 10

#: Content errors: a reader turns these into a warning and stops reading the file.
FORMAT_ERRORS = (ijson.JSONError, ValueError, zipfile.BadZipFile, zlib.error, EOFError)
#: A record of the wrong shape: skipped with a warning, the file goes on.
RECORD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def log_warning(message: str) -> None:
    _log.warning("%s", message)


def head(files: ExportFiles, path: str, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of ``path`` (cached when ``files`` offers a head cache)."""
    cached = getattr(files, "head", None)
    if cached is not None and n <= HEAD_BYTES:
        return cached(path)[:n]
    with files.open(path) as f:
        return read_up_to(f, n)


def head_test(files: ExportFiles, path: str, key: str, test: Callable[[bytes], object]) -> bool:
    """Whether ``test`` accepts the first bytes of ``path``: a per-file recognition test, which
    depends on nothing but those bytes. ``key`` names the test (and its version: change it when
    the test changes); ``files`` that can remember verdicts per file content do (a snapshot's
    files with the messages cache), so an unchanged file is not read again to be recognised."""
    def verdict() -> bool:
        return bool(test(head(files, path)))
    remembered = getattr(files, "head_verdict", None)
    return verdict() if remembered is None else remembered(path, key, verdict)


def read_up_to(f, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def strip_bom(b: bytes) -> bytes:
    return b[3:] if b.startswith(b"\xef\xbb\xbf") else b


def head_events(data: bytes, limit: int = 400) -> list[tuple[str, str, object]]:
    """ijson ``parse`` events of a JSON document's first bytes (fewer if truncated or broken)."""
    out: list[tuple[str, str, object]] = []
    try:
        for ev in ijson.parse(io.BytesIO(strip_bom(data))):
            out.append(ev)
            if len(out) >= limit:
                break
    except FORMAT_ERRORS:
        pass
    return out


def first_item(data: bytes, prefix: str):
    """The first complete value under ``prefix`` in a document's first bytes, or None."""
    try:
        for item in ijson.items(io.BytesIO(strip_bom(data)), prefix, use_float=True):
            return item
    except FORMAT_ERRORS:
        return None
    return None


def top_keys(events: Iterable[tuple[str, str, object]]) -> list[str]:
    """The top-level object keys among ``events``, in order."""
    return [v for p, e, v in events if e == "map_key" and p == ""]  # type: ignore[misc]


class BomSkipping:
    """A read-only stream that drops a leading UTF-8 byte order mark (Windows tools write one)."""

    def __init__(self, f) -> None:
        self._f = f
        self._pending: bytes | None = None

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson probes the stream's type with read(0)
            return b""
        if self._pending is None:
            first = read_up_to(self._f, 3)
            self._pending = b"" if first == b"\xef\xbb\xbf" else first
        if self._pending:
            out, self._pending = self._pending, b""
            more = n - len(out) if n >= 0 else -1
            return out + self._f.read(more) if more else out
        return self._f.read(n)


class FileReport:
    """Per-file warning bookkeeping: caps record warnings, says how many were dropped."""

    def __init__(self, path: str, warn: Warn) -> None:
        self.path = path
        self.warn = warn
        self.skipped = 0

    def bad_record(self, where: str, exc: BaseException) -> None:
        self.skipped += 1
        if self.skipped <= MAX_RECORD_WARNINGS:
            self.warn(f"{self.path}: {where} skipped: {_describe(exc)}")

    def broken(self, exc: BaseException) -> None:
        self.warn(f"{self.path}: unreadable from here on, rest of file skipped: {_describe(exc)}")

    def close(self) -> None:
        if self.skipped > MAX_RECORD_WARNINGS:
            self.warn(f"{self.path}: {self.skipped} malformed records skipped in all")


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def guarded(path: str, warn: Warn, produce: Callable[[FileReport], Iterator[Message]]) -> Iterator[Message]:
    """Run one file's message generator; content errors end the file with a warning."""
    report = FileReport(path, warn)
    try:
        yield from produce(report)
    except FORMAT_ERRORS as exc:
        report.broken(exc)
    finally:
        report.close()


def converted(records: Iterable, convert: Callable[[object], Message | None], report: FileReport,
              what: str) -> Iterator[Message]:
    """``convert`` applied to each record; a record of the wrong shape is reported as ``<what> <n>``
    and skipped, and None (not a message: a tombstone, a notice) is dropped. Errors of the stream
    itself (a truncated document) propagate to ``guarded``."""
    for n, record in enumerate(records):
        try:
            message = convert(record)
        except RECORD_ERRORS as exc:
            report.bad_record(f"{what} {n}", exc)
            continue
        if message is not None:
            yield message


def json_items(f, prefix: str):
    """Stream the values under ``prefix`` (ijson, C backend when available)."""
    return ijson.items(BomSkipping(f), prefix, use_float=True)


def lines(f, report: FileReport, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its end) for each line; over-long lines are skipped."""
    limit = MAX_LINE if limit is None else limit
    n = 0
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        n += 1
        if len(line) > limit and not line.endswith(b"\n"):
            report.bad_record(f"line {n}", ValueError(f"longer than {limit} bytes"))
            while line and not line.endswith(b"\n"):  # drain the rest of the line
                line = f.readline(1 << 20)
            continue
        if n == 1:
            line = strip_bom(line)
        yield n, line.rstrip(b"\r\n")


def s(value) -> str:
    """A string field (None → ""); anything else is a record of the wrong shape."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def int_ms(value) -> int:
    """Integer milliseconds from an int/float/numeric string field."""
    if isinstance(value, bool) or value is None:
        raise TypeError("expected a number")
    if isinstance(value, str):
        value = float(value) if "." in value else int(value)
    if isinstance(value, float):
        return int(round(value))
    if isinstance(value, int):
        return value
    raise TypeError(f"expected a number, got {type(value).__name__}")


def iso_ms(text: str) -> int:
    """UTC milliseconds of an ISO 8601 time; one without an offset is read as UTC."""
    if not isinstance(text, str):
        raise TypeError("expected an ISO 8601 time string")
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    d = _dt.datetime.fromisoformat(t)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return (d - _EPOCH) // _dt.timedelta(milliseconds=1)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def join(root: str, name: str) -> str:
    return posixpath.join(root, name) if root else name


def rel(root: str, path: str) -> str:
    """``path`` relative to the export root (Message.source)."""
    return path[len(root) + 1:] if root and path.startswith(root + "/") else path
