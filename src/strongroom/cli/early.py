"""The key derivation started before the command line is parsed.

Argon2id is the longest step of every command that opens a repository, and importing click and
the commands (~0.1 s of CPU) would otherwise come before it. When the repository and the
password come from the environment alone ($STRONGROOM_REPO, a local path; $STRONGROOM_PASSWORD or
$STRONGROOM_PASSWORD_FILE) and the command is one that opens it, ``start`` begins opening it
(strongroom.opening) at once, on a second core. ``Location.open`` takes that opening only if it
is for the same location and password it would use itself; otherwise it is dropped and the
repository is opened as usual. Guessing wrong therefore costs CPU, never a different result:
errors, their order and exit codes stay those of the usual path (a speculative attempt that
meets any error is dropped in silence, and the usual path meets the error again).

Nothing here runs a password command or touches a remote repository (both have side effects or
costs that must follow the parsed command line).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strongroom.opening import KeyOpening

#: Top-level commands whose first step opens the repository of -r/$STRONGROOM_REPO (not init,
#: demo, run, schedule). tests/test_key_opening.py checks them against the CLI.
OPENING_COMMANDS = frozenset({
    "backup", "cat", "check", "copy", "diff", "drill", "forget", "hold", "holds", "key", "log", "ls", "messages",
    "prune", "receipt", "release", "repair", "restore", "snapshots", "stats", "tag", "unlock",
})
# Any of these on the command line may name another repository or password, or skip opening.
_OVERRIDES = ("-r", "--repo", "--password", "--s3", "-h", "--help", "--version")

_early: tuple[str, bytes, KeyOpening] | None = None  # (URL, password, the opening begun)


def start(argv: list[str], environ: os._Environ | dict[str, str] = os.environ) -> None:
    """Begin opening the repository named by the environment, when ``argv`` will open it."""
    global _early
    _early = None
    end = argv.index("--") if "--" in argv else len(argv)
    if not argv or argv[0] not in OPENING_COMMANDS or any(a.startswith(_OVERRIDES) for a in argv[:end]):
        return
    url = environ.get("STRONGROOM_REPO")
    password = _password(environ)
    if not url or password is None or url.lower().startswith("s3:"):
        return
    from strongroom.errors import StrongroomError
    from strongroom.opening import KeyOpening
    from strongroom.storage import LocalStorage, open_storage
    try:
        storage = open_storage(url)
        if not isinstance(storage, LocalStorage) or not storage.exists():
            return
        _early = (url, password, KeyOpening(storage, password))
    except (StrongroomError, OSError):
        return  # the usual path meets the same error, in its place
    except Exception:  # noqa: BLE001 - a guess must never fail a command; the usual path decides
        return


def take(url: str, password: bytes) -> KeyOpening | None:
    """The opening begun by ``start``, if it was for this location and password (given once)."""
    global _early
    if _early is None or _early[0] != url or _early[1] != password:
        return None  # e.g. copy's source repository: the destination may still take it
    opening, _early = _early[2], None
    return opening


def _password(environ) -> bytes | None:
    """The password as Location.password would find it with no option given, if that needs no
    prompt and no command; None otherwise."""
    if environ.get("STRONGROOM_PASSWORD_FILE"):
        try:
            with open(environ["STRONGROOM_PASSWORD_FILE"], "rb") as f:
                line = f.read().split(b"\n", 1)[0].rstrip(b"\r")
        except OSError:
            return None
        return line or None
    if environ.get("STRONGROOM_PASSWORD_COMMAND"):
        return None
    password = environ.get("STRONGROOM_PASSWORD")
    return os.fsencode(password) if password else None
