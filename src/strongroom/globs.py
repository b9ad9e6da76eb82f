"""Path patterns for --exclude, --include and friends.

``*`` and ``?`` stay within one path component, ``**`` spans components, ``[...]`` is a class.
A pattern without ``/`` matches a path's last component; a pattern starting with ``/`` is anchored
at the path's start; any other pattern matches a trailing run of whole components.
"""

from __future__ import annotations

import os
import re
from typing import Iterable


def _translate(pattern: bytes) -> bytes:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if pattern.startswith(b"**", i):
            i += 2
            if pattern.startswith(b"/", i):  # "**/" also matches zero components
                out.append(b"(?:.*/)?")
                i += 1
            else:
                out.append(b".*")
            continue
        if c == b"*":
            out.append(b"[^/]*")
        elif c == b"?":
            out.append(b"[^/]")
        elif c == b"[":
            j = pattern.find(b"]", i + 2)
            if j == -1:
                out.append(b"\\[")
            else:
                body = pattern[i + 1:j].replace(b"\\", b"\\\\")
                if body.startswith(b"!"):
                    body = b"^" + body[1:]
                out.append(b"[" + body + b"]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return b"".join(out)


class PathMatcher:
    def __init__(self, patterns: Iterable[str | bytes]) -> None:
        regexes = []
        for p in patterns:
            raw = os.fsencode(p).rstrip(b"/") or b"/"
            body = _translate(raw.lstrip(b"/"))
            if raw.startswith(b"/"):
                regexes.append(b"/" + body)
            elif b"/" in raw:
                regexes.append(b"(?:.*/)?" + body)
            else:
                regexes.append(b"(?:.*/)?" + body)
        self.patterns = list(patterns)
        self._re = re.compile(b"(?s)^(?:" + b"|".join(regexes) + b")$") if regexes else None

    def __bool__(self) -> bool:
        return self._re is not None

    def matches(self, path: bytes) -> bool:
        """Whether the absolute path (``/a/b``) itself matches any pattern."""
        return self._re is not None and self._re.match(path) is not None

    def matches_or_ancestor(self, path: bytes) -> bool:
        """Whether the path or any of its parent directories matches."""
        if self._re is None:
            return False
        while path and path != b"/":
            if self._re.match(path):
                return True
            path = path.rsplit(b"/", 1)[0]
        return False


def read_pattern_file(path: str) -> list[str]:
    """Patterns from a file: one per line; blank lines and lines starting with # are ignored."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
