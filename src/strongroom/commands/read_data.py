"""Reading packs end to end: the deep level of `check` (``--read-data``) and the salvage step of
`repair packs`.

A pack is read sequentially in bounded segments (never whole): every byte goes through BLAKE3
to compare with the pack's name, and every blob is authenticated, decrypted, decompressed and
re-hashed as soon as its bytes are in. The blob list comes from the pack's own header; the
index's record of the pack is cross-checked against it and used instead when the header itself
is unreadable, so blobs of a pack with a damaged header can still be tested (and salvaged).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import blake3

from strongroom.compression import decompress_blob
from strongroom.errors import IntegrityError, ObjectNotFound, StrongroomError, UnsupportedFormat, UsageError
from strongroom.pack import BlobEntry, open_blob, pack_cipher, pack_path, parse_header, tail_size_hint
from strongroom.repository import Repository

SEGMENT = 4 * 1024 * 1024  # bytes read per storage call


@dataclass
class PackReport:
    """What reading one pack found."""

    name: str
    size: int = 0  # bytes read
    problems: list[str] = field(default_factory=list)  # pack-level damage (name, header, index mismatch)
    bad_blobs: list[tuple[bytes, str]] = field(default_factory=list)  # (blob id, why)
    blobs_ok: int = 0
    missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.bad_blobs and not self.missing


def _entry_key(e: BlobEntry) -> tuple:
    return (e.id, e.type, e.compression, e.dictionary, e.offset, e.length, e.raw_length)


def read_header(repo: Repository, name: str, size: int) -> tuple[bytes, list[BlobEntry]]:
    """The pack's envelope and header entries, from its last bytes (not the whole pack)."""
    path = pack_path(name)
    want = min(size, tail_size_hint())
    tail = repo.storage.load(path, size - want, want)
    try:
        return parse_header(repo.master, tail, size, path)
    except ValueError:  # the header is larger than the hint: read exactly what it needs
        from strongroom.pack import TRAILER
        env_len, header_len, _, _ = TRAILER.unpack(tail[-TRAILER.size:])
        need = TRAILER.size + env_len + header_len
        return parse_header(repo.master, repo.storage.load(path, size - need, need), size, path)


def read_pack(repo: Repository, name: str, size: int, *,
              on_blob: Callable[[BlobEntry, bytes, bytes], None] | None = None,
              on_bytes: Callable[[int], None] = lambda n: None) -> PackReport:
    """Read and verify one stored pack of ``size`` bytes. ``on_blob(entry, payload, plaintext)``
    receives every blob that verified (repair uses it to salvage them)."""
    path = pack_path(name)
    report = PackReport(name)
    indexed = repo.index.pack_entries(name)
    envelope = None
    entries: list[BlobEntry] = []
    try:
        envelope, entries = read_header(repo, name, size)
    except ObjectNotFound:
        report.missing = True
        return report
    except (IntegrityError, UnsupportedFormat) as e:
        report.problems.append(f"header unreadable: {e}")
        info = repo.index.pack_info(name)
        if info is not None:  # fall back to what the index says the pack holds
            envelope, entries = info[1], indexed
    if envelope is not None and indexed and [_entry_key(e) for e in entries] != [_entry_key(e) for e in indexed]:
        report.problems.append("header does not match the index's record of this pack")
    info = repo.index.pack_info(name)
    if info is not None and info[0] != size:
        report.problems.append(f"size {size}, the index records {info[0]}")
    cipher = None
    if envelope is not None:
        try:
            cipher = pack_cipher(repo.master, envelope, path)
        except StrongroomError as e:
            report.problems.append(str(e))
    hasher = blake3.blake3()
    pending = iter(sorted(entries, key=lambda e: e.offset))
    entry = next(pending, None)
    buf = bytearray()
    base = 0  # pack offset of buf[0]
    pos = 0
    while pos < size:
        chunk = repo.storage.load(path, pos, min(SEGMENT, size - pos))
        if not chunk:
            report.problems.append(f"short read at offset {pos} of {size}")
            break
        hasher.update(chunk)
        pos += len(chunk)
        on_bytes(len(chunk))
        buf += chunk
        while entry is not None and entry.offset + entry.length <= pos:
            if entry.offset >= base:
                sealed = memoryview(buf)[entry.offset - base: entry.offset - base + entry.length]
                _check_blob(repo, cipher, name, entry, sealed, report, on_blob)
                del sealed
            else:  # only a lying index record can overlap (a parsed header is contiguous)
                report.bad_blobs.append((entry.id, "overlaps the previous blob"))
            entry = next(pending, None)
        # keep only bytes a later blob still needs
        keep_from = min(entry.offset, pos) if entry is not None else pos
        if keep_from > base:
            del buf[:keep_from - base]
            base = keep_from
    report.size = pos
    while entry is not None:  # entries beyond what could be read
        report.bad_blobs.append((entry.id, "beyond the end of the pack"))
        entry = next(pending, None)
    if pos == size and hasher.hexdigest() != name:
        report.problems.append("content does not match its name")
    return report


def _check_blob(repo: Repository, cipher, pack: str, entry: BlobEntry, sealed, report: PackReport,
                on_blob) -> None:
    what = f"blob {entry.id.hex()[:16]}"
    if cipher is None:
        report.bad_blobs.append((entry.id, "no usable pack key"))
        return
    try:
        payload = open_blob(cipher, entry, sealed, what)
        data = decompress_blob(entry.compression, payload, entry.raw_length, what, entry.dictionary,
                               repo.dictionaries.get)
        if repo.master.blob_id(data) != entry.id:
            raise IntegrityError(f"{what}: content does not match its id")
    except IntegrityError as e:
        report.bad_blobs.append((entry.id, str(e)))
        return
    report.blobs_ok += 1
    if on_blob is not None:
        on_blob(entry, payload, data)


# -- choosing a subset ----------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Subset:
    """Which packs to read: all, part n of t (by pack name), a random fraction, or random packs
    up to a byte budget."""

    kind: str = "all"  # all | part | percent | bytes
    n: int = 0
    t: int = 0
    value: float = 0.0

    @classmethod
    def parse(cls, spec: str | None) -> Subset:
        if spec is None:
            return cls()
        text = spec.strip()
        if "/" in text:
            try:
                n, t = (int(x) for x in text.split("/"))
            except ValueError:
                raise UsageError(f"invalid subset {spec!r}: use n/t, e.g. 2/7") from None
            if not 1 <= n <= t:
                raise UsageError(f"invalid subset {spec!r}: need 1 <= n <= t")
            return cls("part", n=n, t=t)
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                raise UsageError(f"invalid subset {spec!r}: use a percentage such as 10%") from None
            if not 0 < pct <= 100:
                raise UsageError(f"invalid subset {spec!r}: the percentage must be in (0, 100]")
            return cls("percent", value=pct)
        m = _SIZE.match(text)
        if not m or float(m.group(1)) <= 0:
            raise UsageError(f"invalid subset {spec!r}: use N%, n/t or a size such as 500M")
        return cls("bytes", value=float(m.group(1)) * _UNITS[m.group(2).upper()])

    def select(self, packs: dict[str, int]) -> Iterator[str]:
        """Pick pack names from ``name -> size``. Parts are fixed by the name, so the parts 1/t ..
        t/t together cover every pack exactly once; the other kinds pick at random."""
        if self.kind == "all":
            yield from sorted(packs)
        elif self.kind == "part":
            yield from sorted(p for p in packs if int(p[:16], 16) % self.t == self.n - 1)
        else:
            names = list(packs)
            random.SystemRandom().shuffle(names)
            if self.kind == "percent":
                count = max(1, round(len(names) * self.value / 100)) if names else 0
                yield from sorted(names[:count])
            else:
                total = 0
                chosen = []
                for p in names:
                    if total >= self.value:
                        break
                    chosen.append(p)
                    total += packs[p]
                yield from sorted(chosen)
