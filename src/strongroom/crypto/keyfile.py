"""Key files: the master secret encrypted under a key derived from a passphrase with Argon2id.

A key file is UTF-8 JSON (the KDF parameters must be readable before the passphrase is known);
see spec/repository-format.md, "Key files".
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from strongroom.crypto.aead import ZERO_NONCE, Cipher
from strongroom.crypto.master import SECRET_SIZE, MasterKey
from strongroom.errors import IntegrityError, UnsupportedFormat

KEY_AAD = b"strongroom key file v1"
SALT_SIZE = 16
# Bounds on what a key file may ask for, so a hostile key file cannot exhaust memory or time.
MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_ITERATIONS = 100
MAX_LANES = 64


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The defaults take about 0.3 s and 64 MiB here."""

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4

    def derive(self, password: bytes, salt: bytes) -> bytes:
        return Argon2id(
            salt=salt, length=32, iterations=self.iterations, lanes=self.lanes, memory_cost=self.memory_kib
        ).derive(password)


@dataclass(frozen=True)
class KeyInfo:
    kind: str
    created: str
    hostname: str
    username: str


def create_key_file(
    master: MasterKey, password: bytes, info: KeyInfo, kdf: KdfParams = KdfParams(), *, salt: bytes | None = None
) -> bytes:
    salt = salt if salt is not None else secrets.token_bytes(SALT_SIZE)
    kek = Cipher(kdf.derive(password, salt))
    doc = {
        "version": 1,
        "kind": info.kind,
        "created": info.created,
        "hostname": info.hostname,
        "username": info.username,
        "kdf": {
            "algorithm": "argon2id",
            "memory_kib": kdf.memory_kib,
            "iterations": kdf.iterations,
            "lanes": kdf.lanes,
            "salt": base64.b64encode(salt).decode(),
        },
        "master": base64.b64encode(kek.seal(ZERO_NONCE, master.secret, KEY_AAD)).decode(),
    }
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def parse_key_file(data: bytes, what: str) -> tuple[KeyInfo, KdfParams, bytes, bytes]:
    """Return (info, kdf params, salt, sealed master secret) without needing the passphrase."""
    try:
        doc = json.loads(data)
        if doc.get("version") != 1:
            raise UnsupportedFormat(f"{what}: key file version {doc.get('version')!r} is not supported")
        kdf = doc["kdf"]
        if kdf["algorithm"] != "argon2id":
            raise UnsupportedFormat(f"{what}: unknown KDF {kdf['algorithm']!r}")
        params = KdfParams(int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"]))
        if not (8 <= params.memory_kib <= MAX_MEMORY_KIB and 1 <= params.iterations <= MAX_ITERATIONS
                and 1 <= params.lanes <= MAX_LANES and params.memory_kib >= 8 * params.lanes):
            raise ValueError("KDF parameters out of range")
        info = KeyInfo(str(doc["kind"]), str(doc["created"]), str(doc["hostname"]), str(doc["username"]))
        return info, params, base64.b64decode(kdf["salt"], validate=True), base64.b64decode(doc["master"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{what}: malformed key file ({e})") from None


def open_key_file(data: bytes, password: bytes, what: str) -> MasterKey | None:
    """The master key, or None when the passphrase does not open this key file."""
    info, params, salt, sealed = parse_key_file(data, what)
    kek = Cipher(params.derive(password, salt))
    try:
        secret = kek.open(ZERO_NONCE, sealed, KEY_AAD, what)
    except IntegrityError:
        return None
    if len(secret) != SECRET_SIZE:
        raise IntegrityError(f"{what}: master secret has the wrong length")
    return MasterKey(secret)
