"""The on-disk form of an archive node: its ``archive`` field and its layout blobs.

An archive node (tree node type ``"archive"``) stands for one zip or tar file. Its ``subtree`` is
an ordinary tree of the archive's members (so listing, checking and restoring members reuses the
tree code); its ``archive`` field says how to rebuild the original file byte for byte from

* the *skeleton*: every byte of the (inner) archive stream that is not member data, in order
  (headers, central directory, padding, and compressed data that could not be re-encoded),
  stored like a file's content (chunk ids, chunk lists);
* the *layout* blobs: the archive stream as a sequence of segments, ``{"gap": n}`` (the next n
  bytes of the skeleton) and ``{"member": {...}}`` (a member's data: its chunks, re-encoded).

See spec/repository-format.md §21. This module only encodes and validates; it reads nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from strongroom.errors import IntegrityError

FORMATS = ("zip", "tar", "tar.gz", "tar.zst")
IDENTICAL = "identical"
EQUIVALENT = "equivalent"

# A layout blob is closed once its encoding passes this many bytes (one segment can hold up to
# 2047 inline chunk ids, about 135 KiB, so a blob stays below ~400 KiB).
LAYOUT_BLOB_BYTES = 256 * 1024
_U63 = 2**63 - 1


def _id(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("blob id must be a hex string")
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("blob id must be 32 bytes")
    return raw


def _ids(value: object) -> list[bytes]:
    if not isinstance(value, list):
        raise ValueError("expected a list of blob ids")
    return [_id(v) for v in value]


def _int(value: object, what: str, low: int = 0, high: int = _U63) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} is not an integer in [{low}, {high}]")
    return value


def _hex(value: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise ValueError(f"{what} must be {length} bytes")
    return raw


@dataclass
class Outer:
    """The compression around a tar stream (tar.gz, tar.zst)."""

    codec: str  # "gzip" or "zstd"
    level: int | None = None  # None: re-encoding did not reproduce the original (fidelity "equivalent")
    header: bytes = b""  # gzip: the original member header (magic .. header CRC), verbatim
    trailer: bytes = b""  # gzip: CRC-32 and ISIZE, verbatim (8 bytes)
    checksum: bool = False  # zstd: the frame carries a content checksum
    content_size: bool = False  # zstd: the frame header carries the content size

    def to_json(self) -> dict:
        doc: dict = {"codec": self.codec}
        if self.level is not None:
            doc["level"] = self.level
        if self.codec == "gzip":
            doc["header"] = self.header.hex()
            doc["trailer"] = self.trailer.hex()
        else:
            doc["checksum"] = self.checksum
            doc["content_size"] = self.content_size
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> Outer:
        codec = doc["codec"]
        outer = cls(codec=codec)
        if "level" in doc:
            outer.level = _int(doc["level"], "outer level", -7, 22)
        if codec == "gzip":
            outer.header = _hex(doc["header"], "gzip header")
            outer.trailer = _hex(doc["trailer"], "gzip trailer", 8)
            if len(outer.header) < 10 or outer.header[:3] != b"\x1f\x8b\x08":
                raise ValueError("gzip header is malformed")
        elif codec == "zstd":
            outer.checksum = doc["checksum"] is True
            outer.content_size = doc["content_size"] is True
        else:
            raise ValueError(f"unknown outer codec {codec!r}")
        return outer


@dataclass
class ArchiveInfo:
    """The ``archive`` field of an archive node."""

    format: str
    fidelity: str  # IDENTICAL or EQUIVALENT
    sha256: bytes  # of the original file
    members: int  # member entries (files, directories, symlinks)
    skeleton_size: int
    skeleton: list[bytes] = field(default_factory=list)  # chunk ids of the skeleton
    skeleton_lists: list[bytes] = field(default_factory=list)  # chunk-list ids, as content_lists
    layout: list[bytes] = field(default_factory=list)  # layout blob ids, in order
    outer: Outer | None = None
    tar_sha256: bytes | None = None  # of the inner tar stream, for tar.gz and tar.zst

    def to_json(self) -> dict:
        doc: dict = {"format": self.format, "fidelity": self.fidelity, "sha256": self.sha256.hex(),
                     "members": self.members, "skeleton_size": self.skeleton_size,
                     "layout": [i.hex() for i in self.layout]}
        if self.skeleton:
            doc["skeleton"] = [i.hex() for i in self.skeleton]
        if self.skeleton_lists:
            doc["skeleton_lists"] = [i.hex() for i in self.skeleton_lists]
        if self.outer is not None:
            doc["outer"] = self.outer.to_json()
        if self.tar_sha256 is not None:
            doc["tar_sha256"] = self.tar_sha256.hex()
        return doc

    @classmethod
    def from_json(cls, doc: object) -> ArchiveInfo:
        if not isinstance(doc, dict):
            raise ValueError("archive field must be an object")
        fmt, fidelity = doc["format"], doc["fidelity"]
        if fmt not in FORMATS:
            raise ValueError(f"unknown archive format {fmt!r}")
        if fidelity not in (IDENTICAL, EQUIVALENT):
            raise ValueError(f"unknown archive fidelity {fidelity!r}")
        info = cls(format=fmt, fidelity=fidelity, sha256=_hex(doc["sha256"], "sha256", 32),
                   members=_int(doc["members"], "members"), skeleton_size=_int(doc["skeleton_size"], "skeleton_size"),
                   skeleton=_ids(doc.get("skeleton", [])), skeleton_lists=_ids(doc.get("skeleton_lists", [])),
                   layout=_ids(doc["layout"]))
        compressed = fmt in ("tar.gz", "tar.zst")
        if compressed != ("outer" in doc) or compressed != ("tar_sha256" in doc):
            raise ValueError(f"{fmt}: outer and tar_sha256 are required exactly for tar.gz and tar.zst")
        if compressed:
            info.outer = Outer.from_json(doc["outer"])
            if info.outer.codec != ("gzip" if fmt == "tar.gz" else "zstd"):
                raise ValueError(f"{fmt} with outer codec {info.outer.codec}")
            info.tar_sha256 = _hex(doc["tar_sha256"], "tar_sha256", 32)
        if (fidelity == EQUIVALENT) != (compressed and info.outer.level is None):
            raise ValueError("fidelity is 'equivalent' exactly when an outer stream has no level")
        return info


# -- layout blobs ----------------------------------------------------------------------------

@dataclass
class Gap:
    """The next ``size`` bytes of the skeleton."""

    size: int


@dataclass
class MemberData:
    """One member's data as it appears in the archive stream."""

    size: int  # uncompressed bytes (the sum of the chunks' lengths)
    content: list[bytes] = field(default_factory=list)
    content_lists: list[bytes] = field(default_factory=list)
    deflate: int | None = None  # stored raw-deflate at this zlib level; None: stored as is
    crc32: int | None = None  # zip: the member's CRC-32 from the archive, checked on rebuild


Segment = Gap | MemberData


def segment_to_json(seg: Segment) -> dict:
    if isinstance(seg, Gap):
        return {"gap": seg.size}
    doc: dict = {"size": seg.size}
    if seg.content:
        doc["content"] = [i.hex() for i in seg.content]
    if seg.content_lists:
        doc["content_lists"] = [i.hex() for i in seg.content_lists]
    if seg.deflate is not None:
        doc["deflate"] = seg.deflate
    if seg.crc32 is not None:
        doc["crc32"] = seg.crc32
    return {"member": doc}


def segment_from_json(doc: object) -> Segment:
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ValueError("a segment is an object with one key")
    if "gap" in doc:
        return Gap(_int(doc["gap"], "gap", 1))
    m = doc["member"]
    if not isinstance(m, dict):
        raise ValueError("member segment must be an object")
    seg = MemberData(size=_int(m["size"], "member size"), content=_ids(m.get("content", [])),
                     content_lists=_ids(m.get("content_lists", [])))
    if "deflate" in m:
        seg.deflate = _int(m["deflate"], "deflate level", 0, 9)
    if "crc32" in m:
        seg.crc32 = _int(m["crc32"], "crc32", 0, 2**32 - 1)
    return seg


def encode_layout(segments: list[Segment]) -> bytes:
    return json.dumps({"segments": [segment_to_json(s) for s in segments]}, sort_keys=True,
                      separators=(",", ":")).encode()


def decode_layout(data: bytes, what: str) -> list[Segment]:
    try:
        return [segment_from_json(d) for d in json.loads(data)["segments"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{what}: malformed archive layout ({e})") from None
