"""The S3 backend against a real S3 server (rclone serve s3 on 127.0.0.1): the whole CLI flow,
fault cases (server stopped mid-backup, wrong credentials, missing bucket, unreachable endpoint),
multipart uploads, list pagination, retries and the local object cache."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, WEAK_KDF, WEAK_KDF_ARGS, strongroom_command
from s3server import S3Server
from strongroom.cli import main
from strongroom.errors import ObjectNotFound, StorageError, UsageError
from strongroom.repository import Repository
from strongroom.storage import open_storage
from strongroom.storage import s3 as s3_module
from strongroom.storage.cache import CachedStorage
from strongroom.storage.s3 import S3Options, S3Storage, parse_s3_url


def run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI in this process (its one error handler included) with ``env`` as the
    environment: a fresh interpreter per command would cost a second each in imports."""
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    proc = subprocess.CompletedProcess(["strongroom", *args], code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"strongroom {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def run_process(env: dict, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (for concurrency and kill tests)."""
    proc = subprocess.run([*strongroom_command(), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"strongroom {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def make_tree(root: Path, files: int = 20, size: int = 50_000, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        sub = root / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(hashlib.shake_256(f"{seed}-{i}".encode()).digest(size))
    (root / "notes.txt").write_text("".join(f"message {i} from user {i % 7}\n" for i in range(5000)))
    return root


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def s3_cli(s3_server, s3_bucket, cli_env, tmp_path):
    env = dict(cli_env)
    env.update(s3_server.env())
    env["STRONGROOM_REPO"] = s3_server.url(s3_bucket, "repo")
    return env


# -- URLs and options --------------------------------------------------------------------


def test_parse_urls() -> None:
    assert parse_s3_url("s3:https://minio.example:9000/bucket/some/prefix") == (
        "https://minio.example:9000", "bucket", "some/prefix")
    assert parse_s3_url("s3://bucket") == (None, "bucket", "")
    assert parse_s3_url("s3://bucket/p/", S3Options(endpoint="http://h:1")) == ("http://h:1", "bucket", "p")
    for bad in ("s3:bucket", "s3://", "s3:https:///bucket", "s3://b/../x"):
        with pytest.raises(UsageError):
            parse_s3_url(bad)


def test_addressing_defaults(monkeypatch) -> None:
    monkeypatch.delenv("STRONGROOM_S3_ADDRESSING", raising=False)
    custom = S3Storage("s3:http://127.0.0.1:1/bucket/x")
    assert custom._client.meta.config.s3["addressing_style"] == "path"  # self-hosted: path-style
    aws = S3Storage("s3://bucket/x", S3Options(region="eu-west-1"))
    assert aws._client.meta.config.s3["addressing_style"] == "virtual"
    assert aws.endpoint is None and aws._client.meta.region_name == "eu-west-1"
    with pytest.raises(UsageError, match="addressing"):
        S3Storage("s3://bucket/x", S3Options(addressing="sideways"))


# -- backend behaviour beyond the contract suite ------------------------------------------


def test_multipart_upload_and_ranges(s3_server, s3_bucket, monkeypatch) -> None:
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    storage = open_storage(s3_server.url(s3_bucket, "mp"))
    payload = hashlib.shake_256(b"multipart").digest(11 * 1024 * 1024 + 7)  # 3 parts
    storage.store("data/ab/" + "ab" * 32, payload)
    assert storage.stat("data/ab/" + "ab" * 32) == len(payload)
    assert hashlib.sha256(storage.load("data/ab/" + "ab" * 32)).digest() == hashlib.sha256(payload).digest()
    assert storage.load("data/ab/" + "ab" * 32, 5 * 1024 * 1024 - 3, 6) == payload[5 * 1024 * 1024 - 3:][:6]
    # no unfinished multipart upload is left behind
    uploads = storage._client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert uploads == []


def test_list_pagination(s3_server, s3_bucket, monkeypatch) -> None:
    storage = open_storage(s3_server.url(s3_bucket, "pages"))
    names = {f"index/{i:064x}" for i in range(25)}
    for name in names:
        storage.store(name, b"x" * 3)
    calls = []
    real = storage._client.list_objects_v2

    def small_pages(**kwargs):
        calls.append(kwargs.get("ContinuationToken"))
        return real(**kwargs, MaxKeys=10)

    monkeypatch.setattr(storage._client, "list_objects_v2", small_pages)
    assert dict(storage.list("index")) == {n: 3 for n in names}
    assert len(calls) == 3 and calls[0] is None and calls[1] and calls[2]


def test_retries_transient_errors_with_backoff(s3_server, s3_bucket) -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    storage = S3Storage(s3_server.url(s3_bucket, "r"), S3Options(retries=4))
    delays: list[float] = []
    storage.sleep = delays.append
    failures = [EndpointConnectionError(endpoint_url="x"),
                ClientError({"Error": {"Code": "SlowDown", "Message": "busy"}}, "PutObject"),
                ClientError({"Error": {"Code": "InternalError", "Message": "oops"}}, "PutObject")]
    real = storage._client.put_object

    def flaky(**kwargs):
        if failures:
            raise failures.pop(0)
        return real(**kwargs)

    storage._client.put_object = flaky
    storage.store("locks/x", b"data")
    assert storage.load("locks/x") == b"data"
    assert len(delays) == 3
    assert 0.125 <= delays[0] <= 0.25 and 0.25 <= delays[1] <= 0.5 and 0.5 <= delays[2] <= 1.0
    # a permanent error is not retried
    storage._client.put_object = lambda **kw: (_ for _ in ()).throw(
        ClientError({"Error": {"Code": "InvalidArgument", "Message": "bad"}}, "PutObject"))
    with pytest.raises(StorageError, match="cannot write locks/y .*bad"):
        storage.store("locks/y", b"z")
    assert len(delays) == 3


def test_unreachable_endpoint_is_one_clear_error(s3_env) -> None:
    storage = S3Storage("s3:http://127.0.0.1:9/bucket/repo", S3Options(retries=2, timeout=2))
    storage.sleep = lambda _: None
    with pytest.raises(StorageError, match=r"unreachable after 2 attempt\(s\)"):
        storage.exists()


def test_missing_object_in_missing_bucket(s3_server, s3_env) -> None:
    storage = open_storage(s3_server.url("no-such-bucket", "repo"))
    with pytest.raises(StorageError, match="does not exist"):
        storage.exists()
    with pytest.raises(StorageError, match="does not exist"):
        storage.create()
    with pytest.raises(StorageError, match="does not exist") as info:
        storage.load("config")
    assert not isinstance(info.value, ObjectNotFound)


# -- the whole flow through the CLI --------------------------------------------------------


def test_cli_flow_on_s3(s3_cli, tmp_path) -> None:
    env = s3_cli
    source = make_tree(tmp_path / "src")
    run(env, "init", *WEAK_KDF_ARGS)
    run(env, "backup", str(source), "--tag", "first")
    (source / "notes.txt").write_text("changed\n")
    run(env, "backup", str(source), "--tag", "second")
    listing = run(env, "snapshots", "--json").stdout
    assert listing.count('"tree"') == 2
    run(env, "restore", "latest", "--target", str(tmp_path / "out"))
    assert tree_digest(tmp_path / "out" / source.relative_to("/")) == tree_digest(source)
    checked = run(env, "check", "--read-data")
    assert "no errors" in checked.stdout
    run(env, "forget", "--keep-last", "1")
    assert run(env, "snapshots", "--json").stdout.count('"tree"') == 1
    run(env, "prune")
    assert "no errors" in run(env, "check", "--read-data").stdout
    run(env, "restore", "latest", "--target", str(tmp_path / "out2"))
    assert tree_digest(tmp_path / "out2" / source.relative_to("/")) == tree_digest(source)


def test_wrong_credentials_and_missing_bucket(s3_cli, s3_server) -> None:
    env = dict(s3_cli, AWS_SECRET_ACCESS_KEY="wrong-secret")
    proc = run(env, "snapshots", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("strongroom: access denied to s3 bucket") and proc.stderr.count("\n") == 1
    env = dict(s3_cli, STRONGROOM_REPO=s3_server.url("missing-bucket", "repo"))
    for args in (["init", *WEAK_KDF_ARGS], ["snapshots"]):
        proc = run(env, *args, check=False)
        assert proc.returncode == 1
        assert proc.stderr == f"strongroom: s3 bucket 'missing-bucket' at {s3_server.endpoint} does not exist " \
                              "(create it first)\n"


def test_unreachable_endpoint_cli(cli_env, s3_env) -> None:
    env = dict(cli_env, **s3_env)
    env.update(STRONGROOM_REPO="s3://bucket/repo", STRONGROOM_S3_ENDPOINT="http://127.0.0.1:9",
               STRONGROOM_S3_RETRIES="2")
    proc = run(env, "snapshots", check=False)
    assert proc.returncode == 1
    assert "127.0.0.1:9 unreachable after 2 attempt(s)" in proc.stderr and proc.stderr.count("\n") == 1


def test_server_stopped_mid_backup(tmp_path, cli_env, s3_env) -> None:
    """A private server we can stop while a backup uploads; afterwards the repository is
    consistent: check passes, and a new backup completes and restores."""
    server = S3Server(tmp_path / "private-s3" / "root")
    server.start()
    try:
        bucket = server.make_bucket("stopme")
        env = dict(cli_env, STRONGROOM_REPO=server.url(bucket, "repo"), STRONGROOM_S3_RETRIES="2",
                   STRONGROOM_S3_TIMEOUT="3")
        env.update({k: v for k, v in server.env().items() if not k.startswith("STRONGROOM_S3")})
        run(env, "init", *WEAK_KDF_ARGS, "--compression-level", "0")
        source = make_tree(tmp_path / "big", files=60, size=1_000_000, seed=1)
        proc = subprocess.Popen([*strongroom_command(), "backup", str(source)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        packs = Path(server.root) / bucket / "repo" / "data"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(p.is_file() for p in packs.rglob("*")):
            time.sleep(0.02)
        server.stop()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert err.startswith("strongroom: ") and err.count("\n") == 1
        assert "unreachable" in err or "cannot" in err
        server.start()
        assert "no errors" in run(env, "check", "--read-data").stdout
        run(env, "unlock")
        run(env, "backup", str(source))
        run(env, "restore", "latest", "--target", str(tmp_path / "out"))
        assert tree_digest(tmp_path / "out" / source.relative_to("/")) == tree_digest(source)
        assert "no errors" in run(env, "check", "--read-data").stdout
    finally:
        server.close()


# -- the local object cache ------------------------------------------------------------------


def test_object_cache_avoids_downloads_and_verifies(s3_server, s3_bucket, tmp_path) -> None:
    url = s3_server.url(s3_bucket, "cached")
    with Repository.init(open_storage(url), PASSWORD, kdf=WEAK_KDF) as repo:
        from strongroom.snapshot import Snapshot
        for i in range(3):
            repo.save_snapshot(Snapshot(time=f"2026-01-0{i + 1}T00:00:00+00:00", hostname="h", username="u",
                                        paths=["/x"], tree="00" * 32))
    folder = str(tmp_path / "objcache")
    first = CachedStorage(open_storage(url), folder)
    with Repository.open(first, PASSWORD) as repo:
        assert len(repo.snapshots()) == 3
    assert first.hits == 0 and first.misses == 4  # 3 snapshots + 1 key

    second = CachedStorage(open_storage(url), folder)
    with Repository.open(second, PASSWORD) as repo:
        assert len(repo.snapshots()) == 3
    assert (second.hits, second.misses) == (4, 0)

    # a damaged cached file is detected, dropped and downloaded again
    victim = next(Path(folder, "snapshots").iterdir())
    victim.write_bytes(b"garbage")
    third = CachedStorage(open_storage(url), folder)
    with Repository.open(third, PASSWORD) as repo:
        assert len(repo.snapshots()) == 3
    assert (third.hits, third.misses) == (3, 1)
    assert victim.read_bytes() != b"garbage"

    # objects deleted in the bucket leave the cache with forget_missing
    name = f"snapshots/{victim.name}"
    open_storage(url).delete(name)
    assert third.forget_missing() == 1
    assert not victim.exists()


def test_tree_blobs_come_from_the_cache(s3_server, s3_bucket, tmp_path) -> None:
    from strongroom.commands.backup import BackupOptions, run_backup

    url = s3_server.url(s3_bucket, "trees")
    source = make_tree(tmp_path / "src", files=6, size=1000)
    folder = str(tmp_path / "objcache")
    with Repository.init(CachedStorage(open_storage(url), folder), PASSWORD, kdf=WEAK_KDF) as repo:
        # catalog=False: looking for chat exports reads the new trees back (and caches them)
        snap = run_backup(repo, BackupOptions(paths=[str(source)], catalog=False)).snapshot
    storage = CachedStorage(open_storage(url), folder)
    with Repository.open(storage, PASSWORD) as repo:
        # the key was cached when init stored it: opening downloads nothing cacheable
        assert (storage.hits, storage.misses) == (1, 0)
        root = repo.load_tree(bytes.fromhex(snap.tree))
        assert [n.name for n in root] == [b"tmp"]
        assert (storage.hits, storage.misses) == (1, 1)
        assert repo.load_tree(bytes.fromhex(snap.tree)) == root
        assert (storage.hits, storage.misses) == (2, 1)
        [cached] = Path(folder, "ranges").rglob("*-*-*")
        # damaged: detected, fetched again (flipped, not set to b"X", which 1 run in 256 it was already)
        stored = cached.read_bytes()
        cached.write_bytes(stored[:-1] + bytes([stored[-1] ^ 0xFF]))
        assert repo.load_tree(bytes.fromhex(snap.tree)) == root
        assert (storage.hits, storage.misses) == (2, 2)


def test_credentials_from_a_profile(s3_cli, tmp_path) -> None:
    from s3server import ACCESS_KEY, SECRET_KEY

    run(s3_cli, "init", *WEAK_KDF_ARGS)
    (tmp_path / "credentials").write_text(
        f"[backup-ci]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in s3_cli.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")  # no instance-metadata probing (slow off EC2)
    assert run(env, "snapshots", "--s3-profile", "backup-ci").stdout.strip().endswith("0 snapshot(s)")
    proc = run(env, "snapshots", check=False)  # no profile, no keys
    assert proc.returncode == 1 and "no usable S3 credentials" in proc.stderr
    proc = run(env, "snapshots", "--s3-profile", "nope", check=False)
    assert proc.returncode == 2 and "S3 configuration" in proc.stderr and "nope" in proc.stderr


def test_check_reads_the_bucket_not_the_cache(s3_cli, tmp_path) -> None:
    """A snapshot damaged in the bucket is found by check even though a good copy is cached."""
    source = make_tree(tmp_path / "src", files=2, size=1000)
    run(s3_cli, "init", *WEAK_KDF_ARGS)
    run(s3_cli, "backup", str(source))
    assert run(s3_cli, "snapshots").returncode == 0  # now cached
    storage = open_storage(s3_cli["STRONGROOM_REPO"])
    [(name, _)] = storage.list("snapshots")
    # Damage that also changes the size: rclone's VFS may treat a same-size object rewritten
    # within the same second as unchanged and serve its old bytes.
    storage.store(name, storage.load(name)[:-1])
    assert run(s3_cli, "snapshots").returncode == 0  # served from the verified cache
    proc = run(s3_cli, "check", check=False)
    assert proc.returncode == 1 and name.split("/")[1][:16] in proc.stdout + proc.stderr


def test_sweep_aborts_only_stale_multipart_uploads(s3_server, s3_bucket) -> None:
    storage = open_storage(s3_server.url(s3_bucket, "sweep"))
    client = storage._client
    killed = client.create_multipart_upload(Bucket=s3_bucket, Key="sweep/data/ab/" + "ab" * 32)["UploadId"]
    client.upload_part(Bucket=s3_bucket, Key="sweep/data/ab/" + "ab" * 32, UploadId=killed, PartNumber=1,
                       Body=b"x" * 1024)
    foreign = client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/object")["UploadId"]

    assert storage.sweep_temporaries(3600) == 0  # too young: may be a live writer's
    assert storage.sweep_temporaries(0) == 1
    left = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in left] == [("elsewhere/object", foreign)]
