"""Writing the export files: streamed text, pseudo-random attachments, stale-file removal."""

from __future__ import annotations

import os
import random
from pathlib import Path

from strongroom.samples.common import FORMATS, _KINDS, _T_BYTES, _mix
from strongroom.samples.world import _World


class _Writer:
    def __init__(self, root: Path, world: _World) -> None:
        self.root = root
        self.w = world
        self.written: set[str] = set()
        self.files = 0
        self.bytes = 0
        self.attachments = 0

    def open(self, rel: str):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.add(str(path))
        self.files += 1
        return _Sink(self, path)

    def text(self, rel: str, s: str) -> None:
        with self.open(rel) as f:
            f.write(s)

    def blob(self, rel: str, key: int, kind: str, size: int) -> None:
        _, _, head, tail = _KINDS[kind]
        rng = random.Random(_mix(self.w.seed, _T_BYTES, key))
        body = size - len(head) - len(tail)
        with self.open(rel) as f:
            f.write_bytes(head)
            while body > 0:
                n = min(body, 1 << 20)
                f.write_bytes(rng.randbytes(n))
                body -= n
            f.write_bytes(tail)
        self.attachments += 1

    def prune(self) -> None:
        for fmt in FORMATS:
            top = self.root / fmt
            if not top.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(top, topdown=False):
                for fn in filenames:
                    full = os.path.join(dirpath, fn)
                    if full not in self.written:
                        os.unlink(full)
                for dn in dirnames:
                    full = os.path.join(dirpath, dn)
                    if os.path.isdir(full) and not os.path.islink(full) and not os.listdir(full):
                        os.rmdir(full)


class _Sink:
    """A binary file with a small write buffer that counts bytes."""

    def __init__(self, writer: _Writer, path: Path) -> None:
        self.writer = writer
        self.f = open(path, "wb")  # noqa: SIM115 - closed in __exit__
        self.buf: list[str] = []
        self.pending = 0

    def write(self, s: str) -> None:
        self.buf.append(s)
        self.pending += len(s)
        if self.pending > 1 << 18:
            self.flush()

    def write_bytes(self, b: bytes) -> None:
        self.flush()
        self.f.write(b)
        self.writer.bytes += len(b)

    def flush(self) -> None:
        if self.buf:
            data = "".join(self.buf).encode("utf-8")
            self.f.write(data)
            self.writer.bytes += len(data)
            self.buf.clear()
            self.pending = 0

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.f.close()


def _plain(w: _World, segs, style: int) -> str:
    """Flatten segments. style 0 Slack mrkdwn, 1 '@handle', 2 '@Display Name'."""
    parts = []
    for kind, v in segs:
        if kind == 0:
            if style == 0:
                v = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            parts.append(v)
        elif kind == 1:
            u = w.users[v]
            parts.append(f"<@{u.slack_id}>" if style == 0 else
                         "@" + (u.handle if style == 1 else u.name))
        else:
            parts.append(f"<{v}>" if style == 0 else v)
    return "".join(parts)
