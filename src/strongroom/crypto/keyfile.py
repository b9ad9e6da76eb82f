"""Key files: the master secret encrypted under a key derived from a passphrase with Argon2id.

A key file is UTF-8 JSON (the KDF parameters must be readable before the passphrase is known);
see spec/repository-format.md, "Key files". Two kinds: ``full`` (the master secret, plus since
§16 the key file's own Ed25519 signing seed) and ``write-only`` (a WriterKey's material and
signing seed with its certificate, no master secret).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from strongroom import interrupts
from strongroom.crypto.aead import ZERO_NONCE, Cipher, counter_nonce
from strongroom.crypto.master import SECRET_SIZE, MasterKey
from strongroom.crypto.publickey import WriterKey
from strongroom.crypto.signing import KIND_FULL, KIND_WRITE_ONLY, Signer, public_of
from strongroom.errors import IntegrityError, UnsupportedFormat

KEY_AAD = b"strongroom key file v1"
SIGNING_AAD = b"strongroom key file v1 signing seed"  # sealed with nonce 1 under the same KEK
WRITER_AAD = b"strongroom write-only key file v1"
KIND_NAMES = ("full", "write-only")
SALT_SIZE = 16
# Bounds on what a key file may ask for, so a hostile key file cannot exhaust memory or time.
MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_ITERATIONS = 100
MAX_LANES = 64
_DERIVING = threading.Lock()


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The defaults take about 0.3 s and 64 MiB here."""

    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4

    def derive(self, password: bytes, salt: bytes) -> bytes:
        # One derivation at a time in a process: two at once (copy's source in the main thread
        # while the destination's runs in its early thread) made cryptography 50's Argon2id fail
        # now and then with "Not enough memory to derive key" (tests/test_copy.py).
        with _DERIVING:
            return Argon2id(
                salt=salt, length=32, iterations=self.iterations, lanes=self.lanes, memory_cost=self.memory_kib
            ).derive(password)


class Derivation:
    """One Argon2id derivation running in a thread of its own, started as soon as the key file
    is read. cryptography's Argon2id releases the GIL, so the rest of start-up (imports, the
    index cache, listings) runs on the other core meanwhile; ``result`` waits for the key."""

    def __init__(self, params: KdfParams, password: bytes, salt: bytes) -> None:
        self.params = params
        self.salt = salt
        self._password = password
        self._key: bytes | None = None
        self._error: BaseException | None = None
        # A daemon: an interrupted command exits at once instead of waiting for the derivation.
        self._thread = threading.Thread(target=self._run, name="strongroom-kdf", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._key = self.params.derive(self._password, self.salt)
        except BaseException as e:  # handed to the caller of result(), in its thread
            self._error = e

    def matches(self, params: KdfParams, password: bytes, salt: bytes) -> bool:
        return params == self.params and salt == self.salt and password == self._password

    def result(self) -> bytes:
        # Short joins: Ctrl-C or SIGTERM end the wait at once, even one whose KeyboardInterrupt
        # Python dropped before the wait began (strongroom.interrupts).
        while self._thread.is_alive():
            interrupts.check()
            self._thread.join(0.05)
        if self._error is not None:
            raise self._error
        assert self._key is not None
        return self._key


@dataclass(frozen=True)
class KeyInfo:
    kind: str
    created: str
    hostname: str
    username: str


def calibrate(target_seconds: float, memory_kib: int, lanes: int = 4) -> KdfParams:
    """Argon2id parameters that take about ``target_seconds`` here with ``memory_kib`` of memory."""
    lanes = max(1, min(lanes, memory_kib // 8))
    probe = KdfParams(memory_kib, 1, lanes)
    started = time.perf_counter()
    probe.derive(b"calibration", bytes(SALT_SIZE))
    once = max(time.perf_counter() - started, 1e-6)
    return KdfParams(memory_kib, max(1, min(MAX_ITERATIONS, round(target_seconds / once))), lanes)


def _kdf_doc(kdf: KdfParams, salt: bytes) -> dict:
    return {"algorithm": "argon2id", "memory_kib": kdf.memory_kib, "iterations": kdf.iterations, "lanes": kdf.lanes,
            "salt": base64.b64encode(salt).decode()}


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def create_key_file(
    master: MasterKey, password: bytes, info: KeyInfo, kdf: KdfParams = KdfParams(), *, salt: bytes | None = None,
    signing_seed: bytes | None = None,
) -> bytes:
    """A full key file. With ``signing_seed`` (every key file written since §16) it carries its own
    Ed25519 signing key; without, the file has exactly the original layout."""
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
    if signing_seed is not None:
        doc["signing"] = base64.b64encode(kek.seal(counter_nonce(1), signing_seed, SIGNING_AAD)).decode()
        doc["signing_public"] = public_of(signing_seed).hex()
    return _dump(doc)


def create_writer_key_file(writer: WriterKey, signer_seed: bytes, certificate: bytes, password: bytes,
                           info: KeyInfo, kdf: KdfParams = KdfParams(), *, salt: bytes | None = None) -> bytes:
    """A write-only key file: the writer's material, sealed under the passphrase's KEK."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_SIZE)
    kek = Cipher(kdf.derive(password, salt))
    material = (writer.id_key + writer.shared_root + writer.recipient_public + signer_seed + certificate
                + writer.config_payload)
    doc = {"version": 1, "kind": "write-only", "created": info.created, "hostname": info.hostname,
           "username": info.username, "kdf": _kdf_doc(kdf, salt),
           "writer": base64.b64encode(kek.seal(ZERO_NONCE, material, WRITER_AAD)).decode(),
           "signing_public": public_of(signer_seed).hex()}
    return _dump(doc)


@dataclass
class OpenedKey:
    """A key file opened with its passphrase."""

    key: MasterKey | WriterKey
    signer: Signer
    info: KeyInfo
    kdf: KdfParams


def parse_key_file(data: bytes, what: str) -> tuple[KeyInfo, KdfParams, bytes, bytes]:
    """Return (info, kdf params, salt, sealed master secret) of a full key, without the passphrase."""
    info, params, salt, doc = read_key_info(data, what)
    if info.kind != "full" or "master" not in doc:
        raise IntegrityError(f"{what}: malformed key file (not a full key file (kind {info.kind!r}))")
    return info, params, salt, base64.b64decode(doc["master"], validate=True)


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


def read_key_info(data: bytes, what: str) -> tuple[KeyInfo, KdfParams, bytes, dict]:
    """(info, KDF parameters, salt, JSON document) of a key file of either kind, without a passphrase."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise UnsupportedFormat(f"{what}: key file version {doc.get('version') if isinstance(doc, dict) else None!r} "
                                    "is not supported")
        if doc["kind"] not in KIND_NAMES:
            raise UnsupportedFormat(f"{what}: unknown key kind {doc['kind']!r}")
        kdf = doc["kdf"]
        if kdf["algorithm"] != "argon2id":
            raise UnsupportedFormat(f"{what}: unknown KDF {kdf['algorithm']!r}")
        params = KdfParams(int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"]))
        if not (8 <= params.memory_kib <= MAX_MEMORY_KIB and 1 <= params.iterations <= MAX_ITERATIONS
                and 1 <= params.lanes <= MAX_LANES and params.memory_kib >= 8 * params.lanes):
            raise ValueError("KDF parameters out of range")
        info = KeyInfo(str(doc["kind"]), str(doc["created"]), str(doc["hostname"]), str(doc["username"]))
        for sealed_field in (("master",) if info.kind == "full" else ("writer",)) + (("signing",) if "signing" in doc else ()):
            base64.b64decode(doc[sealed_field], validate=True)
        return info, params, base64.b64decode(kdf["salt"], validate=True), doc
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{what}: malformed key file ({e})") from None


def open_access_key(data: bytes, password: bytes, what: str, *,
                    derivation: Derivation | None = None) -> OpenedKey | None:
    """Open a key file of either kind; None when the passphrase does not open it. A
    ``derivation`` started earlier for this key file's salt and parameters is used if it matches."""
    info, params, salt, doc = read_key_info(data, what)
    if derivation is not None and derivation.matches(params, password, salt):
        kek = Cipher(derivation.result())
    else:
        kek = Cipher(params.derive(password, salt))
    try:
        if info.kind == "full":
            sealed_master = base64.b64decode(doc["master"], validate=True)
            sealed_seed = base64.b64decode(doc["signing"], validate=True) if "signing" in doc else None
        else:
            sealed_writer = base64.b64decode(doc["writer"], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{what}: malformed key file ({e})") from None
    try:
        if info.kind == "full":
            secret = kek.open(ZERO_NONCE, sealed_master, KEY_AAD, what)
        else:
            material = kek.open(ZERO_NONCE, sealed_writer, WRITER_AAD, what)
    except IntegrityError:
        return None
    if info.kind == "full":
        if len(secret) != SECRET_SIZE:
            raise IntegrityError(f"{what}: master secret has the wrong length")
        master = MasterKey(secret)
        # The passphrase opened the master secret, so a failure here is damage, not a wrong password.
        seed = kek.open(counter_nonce(1), sealed_seed, SIGNING_AAD, what) if sealed_seed else master.legacy_signing_seed()
        if len(seed) != 32:
            raise IntegrityError(f"{what}: signing seed has the wrong length")
        return OpenedKey(master, Signer.for_master(master, seed, KIND_FULL), info, params)
    if len(material) < 5 * 32:
        raise IntegrityError(f"{what}: write-only key material is truncated")
    parts = [material[i * 32:(i + 1) * 32] for i in range(5)]
    writer = WriterKey(parts[0], parts[1], parts[2], material[5 * 32:])
    return OpenedKey(writer, Signer(parts[3], KIND_WRITE_ONLY, parts[4]), info, params)
