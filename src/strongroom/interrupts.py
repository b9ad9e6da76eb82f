"""Whether the command line was asked to stop (Ctrl-C or SIGTERM), for waits that must not
depend on a KeyboardInterrupt arriving.

Python raises KeyboardInterrupt wherever the main thread happens to be, and in a few places
(a weakref callback at the end of an import, a Cython module's initialisation) the exception is
printed as "Exception ignored" and dropped. The CLI's handler also records the request here, so
a long wait (the key derivation) can still end at once.
"""

from __future__ import annotations

import threading

requested = threading.Event()


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked for."""
    if requested.is_set():
        raise KeyboardInterrupt
