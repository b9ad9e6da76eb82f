"""The one rule for names inside trees: a name is a single, safe path component."""

from __future__ import annotations

from strongroom.errors import MaliciousTree

SHOW_LIMIT = 128


def show_name(name: bytes) -> str:
    """A printable, escape-safe rendering of a (possibly hostile) name for error messages."""
    if len(name) <= SHOW_LIMIT:
        return repr(name)
    return f"{name[:SHOW_LIMIT]!r}... ({len(name)} bytes)"


def check_name(name: bytes) -> None:
    """Raise MaliciousTree unless ``name`` is a safe single path component.

    Refused: ``b""``, ``b"."``, ``b".."`` and anything containing ``b"/"`` or ``b"\\0"``.
    Any other byte string is fine, including names that are not valid UTF-8.
    """
    if not isinstance(name, bytes):
        raise TypeError(f"file names must be bytes, not {type(name).__name__}")
    if name == b"":
        reason = "empty name"
    elif name in (b".", b".."):
        reason = "reserved name"
    elif b"/" in name:
        reason = "name contains '/'"
    elif b"\0" in name:
        reason = "name contains a NUL byte"
    else:
        return
    raise MaliciousTree(f"refusing unsafe file name {show_name(name)}: {reason}")
