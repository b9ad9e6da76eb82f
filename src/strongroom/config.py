"""The repository config: format version, repository id, chunking and compression settings.

Stored as the sealed object ``config`` (magic SRCF). Its unencrypted header carries the format
version, so a repository of an unknown version is refused before any key is tried.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

from strongroom.chunker import ChunkerParams, ChunkingProfiles
from strongroom.compression import DEFAULT_LEVEL
from strongroom.crypto import sealed
from strongroom.crypto.master import MasterKey
from strongroom.dictionary import DEFAULT_SIZE as DEFAULT_DICTIONARY_SIZE
from strongroom.dictionary import MAX_SIZE as MAX_DICTIONARY_SIZE
from strongroom.errors import IntegrityError
from strongroom.pack import TARGET_PACK_SIZE

CONFIG_NAME = "config"
# Grouped blobs (spec §24) are asked for at init (--group-size): on the benchmark corpora they
# store 7-17 % less but cost 10 % more backup and 55 % more restore CPU, and keep dead members
# until their whole group is unused (bench/RESULTS.md §12.5, §12.6). With --group-size (64K is
# what was measured), members are up to 32 KiB and text chunks 2K:8K:32K unless given (small
# chunks are what groups are for: on 4K:16K:64K chunks they save ~1 %).
DEFAULT_GROUP_MEMBER_MAX = 32 * 1024
GROUPED_TEXT_CHUNKS = ChunkerParams(2048, 8 * 1024, 32 * 1024)
MAX_GROUP_SIZE = 1024 * 1024  # with one member of up to this size on top: far below the readers' cap


@dataclass
class Config:
    id: str = field(default_factory=lambda: secrets.token_hex(32))
    created: str = ""
    chunking: ChunkingProfiles = field(default_factory=ChunkingProfiles)
    compression_level: int = DEFAULT_LEVEL
    pack_size: int = TARGET_PACK_SIZE
    # zstd dictionaries for text blobs (spec "Compression dictionaries"): their size in bytes, 0 = off.
    # On for new repositories; a config without the key (older repositories) means off, so
    # older strongroom versions keep reading those repositories.
    dictionary_size: int = DEFAULT_DICTIONARY_SIZE
    # Grouped blobs (spec "Grouped blobs"): small text blobs compressed and sealed together, in
    # groups of about group_size plaintext bytes, members of at most group_member_max bytes;
    # 0 = off (absent from the config), the default; `init --group-size` turns them on.
    group_size: int = 0
    group_member_max: int = 0

    def encode(self) -> bytes:
        return json.dumps({
            "version": 1,
            "id": self.id,
            "created": self.created,
            "chunking": self.chunking.to_json(),
            "compression": self._compression_json(),
            "pack_size": self.pack_size,
        }, sort_keys=True, separators=(",", ":")).encode()

    def _compression_json(self) -> dict:
        doc = {"algorithm": "zstd", "level": self.compression_level}
        if self.dictionary_size:  # absent when off: configs without dictionaries stay as they were
            doc["dictionary_size"] = self.dictionary_size
        if self.group_size:  # absent when off, likewise
            doc["group_size"] = self.group_size
            doc["group_member_max"] = self.group_member_max
        return doc

    @classmethod
    def decode(cls, data: bytes) -> Config:
        try:
            doc = json.loads(data)
            if doc["version"] != 1 or doc["compression"]["algorithm"] != "zstd":
                raise ValueError("unknown config version or compression")
            if not re.fullmatch(r"[0-9a-f]{64}", doc["id"]):
                raise ValueError("repository id must be 64 hex digits")
            dictionary_size = int(doc["compression"].get("dictionary_size", 0))
            if not (dictionary_size == 0 or 1024 <= dictionary_size <= MAX_DICTIONARY_SIZE):
                raise ValueError(f"dictionary size {dictionary_size} is out of range")
            group_size = int(doc["compression"].get("group_size", 0))
            member_max = int(doc["compression"].get("group_member_max", 0))
            if group_size and not (1024 <= group_size <= MAX_GROUP_SIZE and 64 <= member_max <= group_size):
                raise ValueError(f"group size {group_size} or member size {member_max} is out of range")
            return cls(id=doc["id"], created=doc["created"], chunking=ChunkingProfiles.from_json(doc["chunking"]),
                       compression_level=int(doc["compression"]["level"]), pack_size=int(doc["pack_size"]),
                       dictionary_size=dictionary_size, group_size=group_size,
                       group_member_max=member_max if group_size else 0)
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"config: malformed ({e})") from None


def seal_config(master: MasterKey, config: Config, *, salt: bytes | None = None) -> bytes:
    return sealed.seal(master, sealed.MAGIC_CONFIG, config.encode(), salt=salt)


def open_config(master: MasterKey, data: bytes) -> Config:
    return Config.decode(sealed.unseal(master, sealed.MAGIC_CONFIG, data, "config"))
