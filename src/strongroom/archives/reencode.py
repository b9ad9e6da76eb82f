"""Can the original compressed bytes be produced again from the decompressed ones?

A member stored decompressed deduplicates across days, but restoring the original archive then
needs the compressor to emit exactly the bytes that were there. ``ReencodeCheck`` finds the
parameters (a zlib level, a zstd level) on a bounded prefix and then follows the whole stream,
comparing as it goes; memory stays bounded (a prefix window and the compressor's small lag).
The answer is only "yes, with level L" once the whole stream matched.
"""

from __future__ import annotations

import zlib
from typing import Callable, Protocol

DETECT_WINDOW = 256 * 1024  # decompressed bytes used to pick the level ...
MAX_DETECT_WINDOW = 8 * 1024 * 1024  # ... doubled up to this while the compressor has emitted nothing yet
MAX_LAG = 8 * 1024 * 1024  # original bytes held while the re-encoder catches up
ZLIB_LEVELS = (6, 9, 1, 5, 4, 3, 2, 7, 8, 0)
ZSTD_LEVELS = (3, 19, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12)


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


def raw_deflate(level: int) -> Compressor:
    return zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)


class ReencodeCheck:
    def __init__(self, make: Callable[[int], Compressor], levels: tuple[int, ...], first: int | None = None) -> None:
        self._make = make
        self._levels = ((first,) if first is not None else ()) + tuple(l for l in levels if l != first)
        self._original = bytearray()  # original compressed bytes not yet matched
        self._prefix: bytearray | None = bytearray()  # decompressed bytes until the level is chosen
        self._compressor: Compressor | None = None
        self.level: int | None = None
        self.failed = False
        self._window = DETECT_WINDOW

    def original(self, data: bytes | memoryview) -> None:
        """Compressed bytes as they appear in the archive, in order (always ahead of decoded)."""
        if self.failed:
            return
        self._original += data
        if len(self._original) > MAX_LAG + DETECT_WINDOW:
            self._fail()

    def drop_tail(self, n: int) -> None:
        """The last ``n`` bytes given to original() turned out not to be compressed data."""
        if n and not self.failed:
            if n > len(self._original):
                self._fail()
            else:
                del self._original[-n:]

    def decoded(self, data: bytes | memoryview) -> None:
        """The decompressed bytes, in order."""
        if self.failed:
            return
        if self._compressor is None:
            self._prefix += data
            if len(self._prefix) >= self._window:
                self._choose(final=False)
            return
        self._match(self._compressor.compress(data))

    def finish(self) -> int | None:
        """After the whole stream: the level that reproduces it exactly, or None."""
        if not self.failed and self._compressor is None:
            self._choose(final=True)  # on success the whole stream matched, flush included
        elif not self.failed:
            self._match(self._compressor.flush())
            if self._original:
                self._fail()
        return None if self.failed else self.level

    def _choose(self, *, final: bool) -> None:
        prefix = bytes(self._prefix)
        for level in self._levels:
            c = self._make(level)
            out = c.compress(prefix)
            if final:
                ok = out + c.flush() == self._original
                out = self._original
            elif not out:
                # Highly compressible data: no block is finished yet, so nothing to compare.
                # Look at a longer prefix (bounded), or decide at the end of the stream.
                if self._window < MAX_DETECT_WINDOW:
                    self._window *= 2
                    return
                break
            else:
                ok = self._original.startswith(out)
            if ok:
                self.level, self._compressor, self._prefix = level, c, None
                del self._original[:len(out)]
                return
        self._fail()

    def _match(self, out: bytes) -> None:
        if not out:
            return
        if self._original[:len(out)] != out:
            self._fail()
            return
        del self._original[:len(out)]

    def _fail(self) -> None:
        self.failed = True
        self.level = None
        self._compressor = None
        self._original = bytearray()
        self._prefix = None
