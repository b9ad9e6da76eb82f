"""The catalogue's byte formats (spec §23): record lines, part headers, record-boundary chunks.

Bytes in, bytes out; no repository. A catalogue *part* holds the messages read from one export
file: a header line, then one canonical JSON line per message, sorted. Parts are cut into chunks
only between lines, at points chosen by a keyed hash of the line itself, so the same run of
messages gives the same chunks (and blob ids) in every snapshot, and an edit or a new message
changes only the chunk around it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import blake3

from strongroom.errors import IntegrityError
from strongroom.messages.model import Message

# Version 2 (spec §23.7) dropped the records' text hash and cut chunks ~4x smaller; parts of
# version 1 are still read (their records carry "h").
CATALOG_VERSION = 2
READABLE_VERSIONS = (1, 2)
TEXT_HASH_SIZE = 16
# Chunk cuts: after a line whose keyed hash is 0 modulo CUT_MODULUS, once the chunk holds at least
# MIN_CHUNK bytes; always once it holds MAX_CHUNK bytes (a single longer line is a chunk by itself).
# Small chunks because a night's edits land all over a conversation: an edit rewrites ~3 KiB
# (≈ 16 records) instead of ~13 KiB, and the repository's dictionary keeps small chunks
# compressing nearly as well (spec §23.7).
CUT_MODULUS = 8
MIN_CHUNK = 1024
MAX_CHUNK = 64 * 1024
_RECORD_KEYS = ("a", "c", "e", "i", "p", "t", "x")
_OPTIONAL_KEYS = ("f", "h", "o", "r")  # attachments, text hash (version 1 only), topic, reply_to


def text_hash(text: str) -> str:
    """The record's ``h``: the first 16 bytes of plain BLAKE3 of the UTF-8 text, hex."""
    return blake3.blake3(text.encode("utf-8", "surrogatepass")).digest(TEXT_HASH_SIZE).hex()


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class Record:
    """One catalogued message (a decoded record line)."""

    platform: str
    conversation: str
    message_id: str
    author: str
    time_ms: int
    edited: bool
    text_hash: str
    text: str
    reply_to: str = ""
    topic: str = ""
    attachments: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the message across snapshots."""
        return self.platform, self.conversation, self.message_id

    @property
    def sort_key(self) -> tuple:
        return self.conversation, self.time_ms, self.message_id

    def to_message(self, source: str = "") -> Message:
        return Message(self.platform, self.conversation, self.message_id, self.author, self.time_ms, self.edited,
                       self.text, source, reply_to=self.reply_to, topic=self.topic, attachments=self.attachments)

    def to_json(self) -> dict:
        doc = {"platform": self.platform, "conversation": self.conversation, "id": self.message_id,
               "author": self.author, "time_ms": self.time_ms, "edited": self.edited,
               "text_hash": self.text_hash, "text": self.text}
        if self.reply_to:
            doc["reply_to"] = self.reply_to
        if self.topic:
            doc["topic"] = self.topic
        if self.attachments:
            doc["attachments"] = list(self.attachments)
        return doc


_quote = json.encoder.encode_basestring  # the C encoder json.dumps uses with ensure_ascii=False


def encode_record(m: Message) -> bytes:
    """The canonical record line of a message (no trailing newline): what ``_dumps`` gives for
    the record's dict, assembled directly (keys in sorted order) because this runs per message."""
    if type(m.time_ms) is not int:
        raise ValueError(f"message {m.message_id!r}: time_ms is not an integer")
    for value in (m.author, m.conversation, m.message_id, m.platform, m.text):
        if type(value) is not str:
            raise ValueError(f"message {m.message_id!r}: a text field is not a string")
    parts = ['{"a":', _quote(m.author), ',"c":', _quote(m.conversation), ',"e":', "true" if m.edited else "false"]
    attachments = getattr(m, "attachments", ())
    if attachments:
        parts += [',"f":[', ",".join(_quote(str(a)) for a in attachments), "]"]
    parts += [',"i":', _quote(m.message_id)]
    topic = getattr(m, "topic", "")
    if topic:
        parts += [',"o":', _quote(str(topic))]
    parts += [',"p":', _quote(m.platform)]
    reply_to = getattr(m, "reply_to", "")
    if reply_to:
        parts += [',"r":', _quote(str(reply_to))]
    parts += [',"t":', str(m.time_ms), ',"x":', _quote(m.text), "}"]
    return "".join(parts).encode("utf-8", "surrogatepass")


def record_sort_key(m: Message) -> tuple:
    return m.conversation, m.time_ms, m.message_id


def decode_record(line: bytes | str, what: str) -> Record:
    try:
        d = json.loads(line)
        if tuple(k for k in sorted(d) if k not in _OPTIONAL_KEYS) != _RECORD_KEYS:
            raise ValueError(f"keys {sorted(d)}")
        attachments = d.get("f", [])
        if not isinstance(attachments, list) or not all(isinstance(a, str) for a in attachments):
            raise ValueError("attachments is not a list of strings")
        text = d["x"]
        if not isinstance(text, str):
            raise ValueError("a text field is not a string")
        # Version 2 records leave the hash out (16 bytes that never compress); version 1's is kept.
        if "h" not in d:
            digest = text_hash(text)
        else:
            digest = d["h"]
            if not isinstance(digest, str) or len(digest) != 32 or len(bytes.fromhex(digest)) != TEXT_HASH_SIZE:
                raise ValueError("bad text hash")
        rec = Record(d["p"], d["c"], d["i"], d["a"], d["t"], d["e"], digest, text, d.get("r", ""), d.get("o", ""),
                     tuple(attachments))
        if not all(isinstance(v, str) for v in (rec.platform, rec.conversation, rec.message_id, rec.author,
                                                rec.text_hash, rec.text, rec.reply_to, rec.topic)):
            raise ValueError("a text field is not a string")
        if type(rec.time_ms) is not int or type(rec.edited) is not bool:
            raise ValueError("bad time or edited flag")
    except (ValueError, TypeError, KeyError) as e:
        raise IntegrityError(f"{what}: malformed catalogue record ({e})") from None
    return rec


def iter_records(chunk: bytes, what: str) -> Iterator[Record]:
    for line in chunk.splitlines():
        if line:
            yield decode_record(line, what)


@dataclass(frozen=True)
class PartHeader:
    """The first chunk of a part: where its messages were read from and the key it is reused by."""

    platform: str
    source: str  # the export file, relative to the folder holding the export (see export_relative)
    key: bytes  # 32 bytes: see part_key
    messages: int
    version: int = CATALOG_VERSION  # what is written is always the current version

    def encode(self) -> bytes:
        return _dumps({"catalog": self.version, "key": self.key.hex(), "messages": self.messages,
                       "platform": self.platform, "source": self.source}) + b"\n"

    @classmethod
    def decode(cls, data: bytes, what: str) -> PartHeader:
        try:
            d = json.loads(data)
            version = d.pop("catalog")
            if type(version) is not int or version not in READABLE_VERSIONS:
                raise ValueError("unknown catalogue version")
            header = cls(d["platform"], d["source"], bytes.fromhex(d["key"]), d["messages"], version)
            if len(header.key) != 32 or type(header.messages) is not int or header.messages < 0:
                raise ValueError("bad key or message count")
            if not all(isinstance(v, str) for v in (header.platform, header.source)):
                raise ValueError("a name is not a string")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise IntegrityError(f"{what}: malformed catalogue part header ({e})") from None
        return header


def content_key(keyed_hash: Callable[[bytes], bytes], chunk_ids: Iterable[bytes]) -> bytes:
    """A file's content key: keyed hash over its chunk ids (equal ids, equal content)."""
    h = blake3.blake3()
    for chunk_id in chunk_ids:
        h.update(chunk_id)
    return keyed_hash(b"strongroom catalogue content\0" + h.digest())


def member_key(keyed_hash: Callable[[bytes], bytes], method: int, crc: int, size: int, stored_digest: bytes) -> bytes:
    """A zip member's content key (spec §23.3), from what the archive stores: its compression
    method, CRC-32, uncompressed size and the BLAKE3 of its stored (compressed) data. Equal stored
    data inflates to equal content, so an unchanged member is recognised without inflating it."""
    return keyed_hash(b"strongroom catalogue stored member\0" + struct.pack("<HIQ", method, crc, size) + stored_digest)


def export_relative(root: str, path: str) -> str:
    """``path`` (relative to the snapshot root) relative to the folder that holds the export
    ``root``: what a reader can see of a file's place (its channel folder, its own name), and
    nothing of where the export was backed up from, so a moved export keeps its part keys."""
    base = root.rpartition("/")[0]
    return path[len(base) + 1:] if base and path.startswith(base + "/") else path


def part_key(keyed_hash: Callable[[bytes], bytes], platform: str, source: str, content: bytes,
             context: bytes) -> bytes:
    """What a part depends on: the platform, the file's place in the export (export_relative),
    its content and the content of the export's context files (user and channel lists), and the
    catalogue version (a part of another version is never reused: catalogues stay one version)."""
    doc = _dumps({"catalog": CATALOG_VERSION, "context": context.hex(), "content": content.hex(),
                  "platform": platform, "source": source})
    return keyed_hash(b"strongroom catalogue part\0" + doc)


def memo_key(keyed_hash: Callable[[bytes], bytes], platform: str, source: str, context: bytes,
                 state_version: int) -> bytes:
    """The key of one export file's memo in the messages cache (spec §23.6); a memo holds record
    lines and their cut marks, so the catalogue version is part of the key."""
    doc = _dumps({"catalog": CATALOG_VERSION, "context": context.hex(), "platform": platform, "source": source,
                  "states": state_version})
    return keyed_hash(b"strongroom catalogue memo\0" + doc)


def chunk_records(lines: Iterable[bytes], cut_hash: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """Group record lines (without newlines) into chunks of whole lines; see the module doc."""
    return chunk_marked_records(((line, None) for line in lines), cut_hash)


def may_cut_after(line: bytes, cut_hash: Callable[[bytes], bytes]) -> bool:
    """Whether a chunk may end after ``line`` once it holds MIN_CHUNK bytes (spec §23.2)."""
    return int.from_bytes(cut_hash(line)[:4], "little") % CUT_MODULUS == 0


def chunk_marked_records(marked: Iterable[tuple[bytes, bool | None]], cut_hash: Callable[[bytes], bytes]
                         ) -> Iterator[bytes]:
    """``chunk_records`` for (line, its ``may_cut_after``): a memo keeps the mark, so a known line
    is not hashed again; None means not known, computed only once the chunk holds MIN_CHUNK."""
    buf: list[bytes] = []
    size = 0
    for line, may_cut in marked:
        buf.append(line)
        buf.append(b"\n")
        size += len(line) + 1
        if size >= MAX_CHUNK or (size >= MIN_CHUNK
                                 and (may_cut if may_cut is not None else may_cut_after(line, cut_hash))):
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)
