"""Starting real crmgate processes for end-to-end tests, and waiting for them properly."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_DEADLINE = 30.0
LISTENING = re.compile(r"crmgate: (grpc|http) listening on (\S+)")


def crmgate_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", *args]


def run_admin(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `crmgate admin …` against a data dir; returns stdout, raises on failure."""
    result = subprocess.run(
        crmgate_command("admin", "--data-dir", str(data_dir), *args),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"crmgate admin {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


@dataclass
class CrmgateProcess:
    process: subprocess.Popen[str]
    data_dir: Path
    http_url: str
    grpc_target: str
    output: list[str]

    @classmethod
    @contextmanager
    def start(
        cls,
        data_dir: Path,
        *,
        gateway_calls: str = "in-process",
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Iterator[CrmgateProcess]:
        process = subprocess.Popen(
            crmgate_command(
                "serve",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
                "--data-dir",
                str(data_dir),
                "--gateway-calls",
                gateway_calls,
                *extra,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines: queue.Queue[str] = queue.Queue()
        output: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        found: dict[str, str] = {}
        deadline = time.monotonic() + STARTUP_DEADLINE
        while len(found) < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                process.kill()
                raise AssertionError("crmgate did not start:\n" + "".join(output))
            try:
                match = LISTENING.search(lines.get(timeout=remaining))
            except queue.Empty:
                continue
            if match:
                found[match.group(1)] = match.group(2)
        server = cls(process, data_dir, found["http"], found["grpc"], output)
        try:
            server.wait_until_answering()
            yield server
        finally:
            server.stop()

    def wait_until_answering(self) -> None:
        """Poll the gateway until it answers (any HTTP status), within the deadline."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            try:
                urllib.request.urlopen(self.http_url + "/api/c2c/health", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answered; 400 without headers is an answer
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError("crmgate did not stop on SIGTERM") from None

    def admin(self, *args: str) -> str:
        return run_admin(self.data_dir, *args)

    def log_records(self) -> list[dict[str, object]]:
        records = []
        for line in self.output:
            if line.startswith("{"):
                records.append(json.loads(line))
        return records
