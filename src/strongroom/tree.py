"""Trees: the canonical encoding of one directory's entries.

A tree blob is compact UTF-8 JSON with sorted keys, ``{"nodes": [...]}``, nodes sorted by the
bytes of their names, so the same directory always encodes to the same bytes and the same id.
Names and symlink targets that are not valid UTF-8 are stored base64-encoded under ``name_b64``
/ ``target_b64``. Files with many chunks list them in "chunk list" blobs (also tree-type blobs)
so that no single object grows without bound. See spec/repository-format.md, "Trees".
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from strongroom.archives.format import ArchiveInfo
from strongroom.errors import IntegrityError, MaliciousTree
from strongroom.names import check_name

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
ARCHIVE = "archive"  # a zip or tar file stored member-wise (spec §21, strongroom.archives)
NODE_TYPES = (FILE, DIR, SYMLINK, ARCHIVE)

# A file with this many chunks or more lists them in chunk-list blobs of this many ids each.
MAX_INLINE_CHUNKS = 2048

_U32 = (0, 2**32 - 1)
_U63 = (0, 2**63 - 1)
_I64 = (-(2**63), 2**63 - 1)
# Every integer field with its allowed range (what the OS calls restore makes can take).
_INT_FIELDS = {"mode": (0, 0o7777), "uid": _U32, "gid": _U32, "mtime_ns": _I64, "ctime_ns": _I64,
               "size": _U63, "inode": _U63, "device": _U63}


@dataclass
class Node:
    name: bytes
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0
    inode: int = 0
    device: int = 0
    user: str = ""
    group: str = ""
    content: list[bytes] = field(default_factory=list)  # chunk ids, in order
    content_lists: list[bytes] = field(default_factory=list)  # ids of chunk-list blobs
    subtree: bytes | None = None
    target: bytes | None = None
    archive: ArchiveInfo | None = None  # archive nodes: how to rebuild the file; subtree = members

    def to_json(self) -> dict:
        doc: dict = {"type": self.type}
        _put_bytes(doc, "name", self.name)
        for key in _INT_FIELDS:
            value = getattr(self, key)
            if value:
                doc[key] = value
        if self.user:
            doc["user"] = self.user
        if self.group:
            doc["group"] = self.group
        if self.content:
            doc["content"] = [c.hex() for c in self.content]
        if self.content_lists:
            doc["content_lists"] = [c.hex() for c in self.content_lists]
        if self.subtree is not None:
            doc["subtree"] = self.subtree.hex()
        if self.target is not None:
            _put_bytes(doc, "target", self.target)
        if self.archive is not None:
            doc["archive"] = self.archive.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> Node:
        node = cls(name=_get_bytes(doc, "name"), type=doc["type"])
        if node.type not in NODE_TYPES:
            raise ValueError(f"unknown node type {node.type!r}")
        for key, (low, high) in _INT_FIELDS.items():
            value = doc.get(key, 0)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{key} is not an integer in [{low}, {high}]")
            setattr(node, key, value)
        node.user = str(doc.get("user", ""))
        node.group = str(doc.get("group", ""))
        node.content = [_id(c) for c in doc.get("content", ())]
        node.content_lists = [_id(c) for c in doc.get("content_lists", ())]
        if "subtree" in doc:
            node.subtree = _id(doc["subtree"])
        if "target" in doc or "target_b64" in doc:
            node.target = _get_bytes(doc, "target")
        if node.type == ARCHIVE:
            node.archive = ArchiveInfo.from_json(doc["archive"])
        if node.type in (DIR, ARCHIVE) and node.subtree is None:
            raise ValueError(f"{node.type} without subtree")
        if node.type != FILE and (node.content or node.content_lists):
            raise ValueError("content on a node that is not a file")
        if node.type == SYMLINK and node.target is None:
            raise ValueError("symlink without target")
        return node


def _put_bytes(doc: dict, key: str, value: bytes) -> None:
    try:
        doc[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        doc[key + "_b64"] = base64.b64encode(value).decode()


def _get_bytes(doc: dict, key: str) -> bytes:
    if key in doc:
        return doc[key].encode("utf-8")
    return base64.b64decode(doc[key + "_b64"], validate=True)


def _id(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("blob id must be 32 bytes")
    return raw


def encode_tree(nodes: list[Node]) -> bytes:
    ordered = sorted(nodes, key=lambda n: n.name)
    for a, b in zip(ordered, ordered[1:]):
        if a.name == b.name:
            raise ValueError(f"duplicate name {a.name!r} in a tree")
    return json.dumps({"nodes": [n.to_json() for n in ordered]}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def decode_tree(data: bytes, what: str) -> list[Node]:
    """Parse and validate a tree: names safe, unique and sorted."""
    try:
        nodes = [Node.from_json(d) for d in json.loads(data)["nodes"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{what}: malformed tree ({e})") from None
    previous = None
    for node in nodes:
        check_name(node.name)
        if previous is not None and node.name <= previous:
            raise MaliciousTree(f"{what}: names are duplicated or out of order near {node.name!r}")
        previous = node.name
    return nodes


def encode_chunk_list(ids: list[bytes]) -> bytes:
    return json.dumps({"chunks": [i.hex() for i in ids]}, separators=(",", ":")).encode()


def decode_chunk_list(data: bytes, what: str) -> list[bytes]:
    try:
        return [_id(c) for c in json.loads(data)["chunks"]]
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{what}: malformed chunk list ({e})") from None
