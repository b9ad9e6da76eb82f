"""A repository in an S3 bucket (AWS S3, MinIO, Ceph RGW, rclone serve s3, ...), via boto3.

Object ``name`` is stored under the key ``<prefix>/<name>`` (``<name>`` with no prefix).

URLs: ``s3:https://host:port/bucket/prefix`` names the endpoint in the URL (path-style
addressing, as self-hosted servers expect); ``s3://bucket/prefix`` uses the endpoint from
``--s3-endpoint`` / ``$STRONGROOM_S3_ENDPOINT``, or AWS itself when none is given. Credentials
and region come the standard AWS ways (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE`` or ``--s3-profile``, ``~/.aws/config``, instance roles).

All boto3/botocore exceptions become strongroom errors in one place, :meth:`S3Storage._call`,
which also retries transient failures (timeouts, dropped connections, 5xx, throttling) with
exponential backoff. Retrying there rather than in botocore covers reading a response body too.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from strongroom.errors import (
    ObjectNotFound,
    RepositoryExists,
    StorageError,
    UsageError,
)
from strongroom.storage.base import CONFIG, Data, Storage, is_init_leftover, validate_name, validate_range

T = TypeVar("T")

#: Objects at least this big are uploaded in parts (each part retried on its own). Above the
#: default pack size (16 MiB, a little more with a last big blob): ordinary packs take one PUT.
MULTIPART_THRESHOLD = 32 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024  # S3's minimum part size is 5 MiB (except the last part)

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
                 "InvalidToken", "ExpiredToken", "Forbidden", "AuthorizationHeaderMalformed"}
_TRANSIENT_CODES = {"RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling",
                    "ThrottlingException", "InternalError", "ServiceUnavailable", "503", "500",
                    "502", "504", "PriorRequestNotComplete"}


@dataclass(frozen=True)
class S3Options:
    """Connection settings beyond the URL; every field falls back to an environment variable."""

    endpoint: str | None = None  # $STRONGROOM_S3_ENDPOINT
    region: str | None = None  # $STRONGROOM_S3_REGION, then the AWS ways ($AWS_REGION, profile)
    profile: str | None = None  # $STRONGROOM_S3_PROFILE, then $AWS_PROFILE (boto3 reads it)
    addressing: str | None = None  # "path", "virtual" or "auto" ($STRONGROOM_S3_ADDRESSING)
    retries: int | None = None  # attempts per operation ($STRONGROOM_S3_RETRIES, default 6)
    timeout: float | None = None  # connect and read timeout, seconds ($STRONGROOM_S3_TIMEOUT, 60)

    def resolved(self) -> S3Options:
        env = os.environ.get
        try:
            retries = int(self.retries if self.retries is not None else env("STRONGROOM_S3_RETRIES", "6"))
            timeout = float(self.timeout if self.timeout is not None else env("STRONGROOM_S3_TIMEOUT", "60"))
        except ValueError as exc:
            raise UsageError(f"invalid S3 retries or timeout setting: {exc}") from None
        addressing = (self.addressing or env("STRONGROOM_S3_ADDRESSING") or "auto").lower()
        if addressing not in ("auto", "path", "virtual"):
            raise UsageError(f"invalid S3 addressing {addressing!r}: use auto, path or virtual")
        return S3Options(
            endpoint=self.endpoint or env("STRONGROOM_S3_ENDPOINT") or None,
            region=self.region or env("STRONGROOM_S3_REGION") or None,
            profile=self.profile or env("STRONGROOM_S3_PROFILE") or None,
            addressing=addressing,
            retries=max(1, retries),
            timeout=max(0.1, timeout),
        )


def parse_s3_url(url: str, options: S3Options | None = None) -> tuple[str | None, str, str]:
    """Split an ``s3:`` URL into (endpoint or None, bucket, key prefix without slashes)."""
    rest = url[3:] if url.lower().startswith("s3:") else url
    endpoint = None
    if rest.startswith("//"):  # s3://bucket/prefix
        path = rest[2:]
    elif rest.lower().startswith(("http://", "https://")):
        parts = urlsplit(rest)
        if not parts.netloc:
            raise UsageError(f"S3 URL {url!r} has no host")
        endpoint = f"{parts.scheme}://{parts.netloc}"
        path = parts.path
    else:
        raise UsageError(f"invalid S3 URL {url!r}: use s3:https://host:port/bucket/prefix or s3://bucket/prefix")
    bucket, _, prefix = path.strip("/").partition("/")
    if not bucket:
        raise UsageError(f"S3 URL {url!r} names no bucket")
    prefix = prefix.strip("/")
    if prefix:
        validate_name_or_usage(prefix, url)
    if endpoint is None and options is not None:
        endpoint = options.endpoint
    return endpoint, bucket, prefix


def validate_name_or_usage(prefix: str, url: str) -> None:
    try:
        validate_name(prefix)
    except ValueError:
        raise UsageError(f"invalid S3 URL {url!r}: bad key prefix {prefix!r}") from None


class S3Storage(Storage):
    """Objects in ``bucket`` under ``prefix``. PUT and CompleteMultipartUpload are atomic in S3,
    so readers never see a partial object."""

    #: Packs in flight during a backup: object stores reward parallel requests.
    parallel_uploads = 4

    def __init__(self, url: str, options: S3Options | None = None) -> None:
        from botocore.config import Config as BotoConfig

        opts = (options or S3Options()).resolved()
        self.options = opts
        endpoint, self.bucket, self.prefix = parse_s3_url(url, opts)
        self.endpoint = endpoint
        self.url = url
        addressing = opts.addressing
        if addressing == "auto":  # self-hosted servers rarely have wildcard DNS for buckets
            addressing = "path" if endpoint else "virtual"
        config = BotoConfig(
            retries={"total_max_attempts": 1},  # we retry ourselves, see _call
            connect_timeout=opts.timeout,
            read_timeout=opts.timeout,
            s3={"addressing_style": addressing},
            max_pool_connections=32,
        )
        try:
            self._client = _new_client(opts.profile, opts.region, endpoint_url=endpoint, config=config)
        except Exception as exc:  # botocore ProfileNotFound, a bad endpoint URL, ...
            raise UsageError(f"S3 configuration: {exc}") from None
        self.sleep: Callable[[float], None] = time.sleep  # replaceable in tests

    # -- the one boundary between botocore and strongroom --------------------------------

    def _where(self) -> str:
        return f"s3 bucket {self.bucket!r}" + (f" at {self.endpoint}" if self.endpoint else "")

    def _call(self, what: str, name: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one S3 request, response body included) and map its failures.

        Transient failures are retried up to ``options.retries`` attempts in all, waiting
        0.25 s, 0.5 s, 1 s, ... (capped at 20 s, with jitter) in between.
        """
        from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError,
                                         HTTPClientError, IncompleteReadError, NoCredentialsError,
                                         PartialCredentialsError)
        from urllib3.exceptions import HTTPError as Urllib3Error

        attempts = self.options.retries or 1
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                if code in _NOT_FOUND_CODES:
                    raise ObjectNotFound(f"object {name} not found in {self.url}") from None
                if code == "NoSuchBucket":
                    raise StorageError(f"{self._where()} does not exist (create it first)") from None
                if code in _DENIED_CODES:
                    raise StorageError(f"access denied to {self._where()} while trying to {what} {name} "
                                       f"({code}): check the S3 credentials") from None
                if code not in _TRANSIENT_CODES or attempt == attempts:
                    message = err.get("Message") or code
                    raise StorageError(f"cannot {what} {name} in {self._where()}: {message}") from None
            except (NoCredentialsError, PartialCredentialsError) as exc:
                raise StorageError(f"no usable S3 credentials ({exc}): set AWS_ACCESS_KEY_ID and "
                                   f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from None
            except (BotoConnectionError, HTTPClientError, IncompleteReadError, Urllib3Error, OSError) as exc:
                # refused, reset, timed out, or cut off while reading the body
                if attempt == attempts:
                    raise StorageError(f"cannot {what} {name}: {self._where()} unreachable after {attempts} "
                                       f"attempt(s) ({type(exc).__name__})") from None
            except BotoCoreError as exc:
                raise StorageError(f"cannot {what} {name} in {self._where()}: {exc}") from None
            delay = min(20.0, 0.25 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- protocol ---------------------------------------------------------------------------

    def create(self) -> None:
        self._check_bucket()
        if self.exists():
            raise RepositoryExists(f"a repository already exists at {self.url}")
        for _ in self._init_leftovers():  # first look at everything: refuse before deleting anything
            pass
        for name in self._init_leftovers():
            self._call("delete", name, lambda: self._client.delete_object(Bucket=self.bucket, Key=self._key(name)))
        # S3 has no folders: nothing to make

    def _check_bucket(self) -> None:
        try:
            self._call("open", "the bucket", lambda: self._client.head_bucket(Bucket=self.bucket))
        except ObjectNotFound:  # HEAD has no error body: a bare 404 here means no bucket
            raise StorageError(f"{self._where()} does not exist (create it first)") from None

    def _init_leftovers(self) -> Iterator[str]:
        """Yield the names of the key files an interrupted init left under the prefix; raise
        RepositoryExists at the first object that is anything else. One page at a time."""
        key_prefix = self._key("")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix}
        while True:
            page = self._call("list", key_prefix or "the bucket", lambda: self._client.list_objects_v2(**kwargs))
            for item in page.get("Contents", ()):
                name = item["Key"][len(key_prefix):]
                if not is_init_leftover(name):
                    raise RepositoryExists(f"cannot create repository: {self.url} is not empty "
                                           f"(it holds {item['Key']!r} and no config)")
                yield name
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def exists(self) -> bool:
        try:
            self.stat(CONFIG)
            return True
        except ObjectNotFound:
            self._check_bucket()  # HEAD answers a bare 404 for a missing bucket too
            return False

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_name(name)
        validate_range(offset, length)
        if length == 0:
            self.stat(name)  # still report a missing object
            return b""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name)}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"

        def get() -> bytes:
            from botocore.exceptions import ClientError
            try:
                response = self._client.get_object(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # offset at or past the end: a short read
                raise
            with response["Body"] as body:
                data = body.read()
            expected = response.get("ContentLength")
            if expected is not None and len(data) != expected:  # connection dropped mid-body
                raise ConnectionResetError(f"short body: {len(data)} of {expected} bytes")
            return data

        return self._call("read", name, get)

    def store(self, name: str, data: Data) -> None:
        validate_name(name)
        view = memoryview(data).cast("B")
        key = self._key(name)
        if len(view) < MULTIPART_THRESHOLD:
            body = view.tobytes() if not isinstance(data, bytes) else data
            self._call("write", name, lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=body))
            return
        self._store_multipart(name, key, view)

    def _store_multipart(self, name: str, key: str, view: memoryview) -> None:
        upload = self._call("write", name, lambda: self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key))
        upload_id = upload["UploadId"]
        parts = []
        try:
            for number, start in enumerate(range(0, len(view), MULTIPART_CHUNK), start=1):
                chunk = view[start:start + MULTIPART_CHUNK].tobytes()
                result = self._call("write", name, lambda: self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk))
                parts.append({"PartNumber": number, "ETag": result["ETag"]})
            self._call("write", name, lambda: self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            try:  # best effort: leave no half-uploaded parts billed in the bucket
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:
                pass
            raise

    def delete(self, name: str) -> None:
        self.stat(name)  # S3 deletes a missing key silently; the protocol reports it
        self._call("delete", name, lambda: self._client.delete_object(Bucket=self.bucket, Key=self._key(name)))

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        validate_name(prefix)  # eagerly, before iterating
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        key_prefix = self._key(prefix) + "/"
        strip = len(self._key(""))
        token: str | None = None
        while True:  # one page (up to 1000 keys) in memory at a time
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix, lambda: self._client.list_objects_v2(**kwargs))
            for item in page.get("Contents", ()):
                name = item["Key"][strip:]
                try:
                    validate_name(name)
                except ValueError:
                    continue  # foreign or temporary keys are not ours
                yield name, int(item["Size"])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"cannot list {prefix} in {self._where()}: truncated page without a token")

    def sweep_temporaries(self, older_than_s: float) -> int:
        """Abort multipart uploads under our prefix that a killed writer left incomplete (their
        parts are stored and billed, though no reader ever sees them)."""
        cutoff = time.time() - older_than_s
        removed = 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key("")}
        while True:
            try:
                page = self._call("list", "uploads", lambda: self._client.list_multipart_uploads(**kwargs))
            except ObjectNotFound:  # some servers answer NoSuchUpload when there are none
                return removed
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() < cutoff:
                    key, upload_id = upload["Key"], upload["UploadId"]
                    self._call("delete", key, lambda: self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id))
                    removed += 1
            if not page.get("IsTruncated"):
                return removed
            kwargs.update(KeyMarker=page.get("NextKeyMarker"), UploadIdMarker=page.get("NextUploadIdMarker"))

    def stat(self, name: str) -> int:
        validate_name(name)
        head = self._call("stat", name, lambda: self._client.head_object(Bucket=self.bucket, Key=self._key(name)))
        return int(head["ContentLength"])

    def close(self) -> None:
        self._client.close()


_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                         "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_DEFAULT_REGION", "AWS_REGION")
_sessions: dict[tuple[str | None, ...], Any] = {}
_sessions_lock = threading.Lock()


def _new_client(profile: str | None, region: str | None, **kwargs: Any) -> Any:
    """An S3 client from one boto3 session per (profile, region): the session caches the parsed
    service model, which makes further clients cheap. Sessions are not thread-safe: hence the lock."""
    import boto3

    # A session resolves credentials once: key it by everything they come from as well.
    key = (profile, region, *(os.environ.get(v) for v in _CREDENTIAL_VARIABLES))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = boto3.session.Session(profile_name=profile, region_name=region)
        return session.client("s3", **kwargs)


def open_s3(rest: str, options: S3Options | None = None) -> Storage:
    """SCHEMES factory: ``rest`` is the URL after ``s3:``."""
    return S3Storage(f"s3:{rest}", options)
