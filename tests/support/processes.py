"""Starting real crmgate processes for end-to-end tests, and waiting for them properly."""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_DEADLINE = 30.0
LISTENING = re.compile(r"crmgate: (grpc|http|metrics) listening on (\S+)")


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
class Launched:
    """One crmgate process and what it printed, its listening addresses read off that."""

    process: subprocess.Popen[str]
    output: list[str]
    addresses: dict[str, str]
    killed: bool = False

    def kill(self) -> None:
        """SIGKILL: a crash in the middle of whatever the process is doing."""
        self.process.kill()
        self.process.wait(timeout=15)
        self.killed = True

    def stop(self) -> None:
        """SIGTERM, and a clean exit (status 0) soon after: the graceful shutdown."""
        if self.killed:
            return  # killed on purpose
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError("crmgate did not stop on SIGTERM") from None
        assert self.process.returncode == 0, "".join(self.output[-20:])


@contextmanager
def launched(
    *args: str,
    expect: frozenset[str],
    env: dict[str, str] | None = None,
    max_file_bytes: int | None = None,
    log_path: Path | None = None,
) -> Iterator[Launched]:
    """Run `crmgate ARGS` until it announces every address in `expect` ('grpc', 'http').

    `max_file_bytes` sets RLIMIT_FSIZE on the process: writing past it fails with EFBIG,
    a real I/O fault in the middle of whatever is being written. `log_path` takes the
    log lines (stderr) into a file, as a service manager would, instead of into `output`
    (benchmarks: reading them back here would load the machine being measured).
    """

    def limit() -> None:
        if max_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    with ExitStack() as files:
        stderr = files.enter_context(log_path.open("w")) if log_path else subprocess.STDOUT
        process = subprocess.Popen(
            crmgate_command(*args),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=limit,
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
    while not expect <= found.keys():
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
    running = Launched(process, output, found)
    try:
        yield running
    finally:
        running.stop()


def child_processes(pid: int) -> list[int]:
    """The running processes whose parent is `pid` (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        stat = _stat(entry.name) if entry.name.isdigit() else []
        if stat and stat[0] != "Z" and int(stat[1]) == pid:
            children.append(int(entry.name))
    return children


def wait_until_gone(pids: list[int]) -> None:
    """Poll until none of the processes runs (gone, or a zombie), within the deadline."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while running := [pid for pid in pids if _running(pid)]:
        assert time.monotonic() < deadline, f"processes {running} still run"
        time.sleep(0.05)


def _running(pid: int | str) -> bool:
    stat = _stat(pid)
    return bool(stat) and stat[0] != "Z"


def _stat(pid: int | str) -> list[str]:
    """A process's /proc stat fields after its name (state, parent, …); none once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def wait_until_answering(http_url: str) -> None:
    """Poll the gateway until it answers (any HTTP status), within the deadline."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while True:
        try:
            urllib.request.urlopen(http_url + "/api/c2c/health", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered; 400 without headers is an answer
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class CrmgateProcess:
    """A running crmgate deployment: `serve` alone, or `server` + `gateway` (split)."""

    data_dir: Path
    http_url: str
    grpc_target: str
    processes: list[Launched]
    #: The database the processes use (CRMGATE_DATABASE_URL); None: SQLite in data_dir.
    database_url: str | None = None

    @classmethod
    @contextmanager
    def start(
        cls,
        data_dir: Path,
        *,
        gateway_calls: str = "in-process",
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        max_file_bytes: int | None = None,
        log_dir: Path | None = None,
    ) -> Iterator[CrmgateProcess]:
        """`crmgate serve` on free ports (`gateway_calls`: in-process or channel), on the
        database `env` names in CRMGATE_DATABASE_URL, else SQLite in `data_dir`; log
        lines go to `log_dir`/serve.log when given."""
        args = ("serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(data_dir))
        with launched(
            *args,
            "--gateway-calls",
            gateway_calls,
            *extra,
            expect=frozenset({"grpc", "http"}),
            env=env,
            max_file_bytes=max_file_bytes,
            log_path=log_dir / "serve.log" if log_dir else None,
        ) as serve:
            wait_until_answering(serve.addresses["http"])
            yield cls(
                data_dir,
                serve.addresses["http"],
                serve.addresses["grpc"],
                [serve],
                (env or {}).get("CRMGATE_DATABASE_URL"),
            )

    @classmethod
    @contextmanager
    def start_split(
        cls,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        server_extra: tuple[str, ...] = (),
        expect_server: frozenset[str] = frozenset({"grpc"}),
    ) -> Iterator[CrmgateProcess]:
        """`crmgate server` and `crmgate gateway --grpc-target` as two processes (log
        lines to `log_dir`/server.log and gateway.log when given); `server_extra`: more
        arguments of the server, which then announces `expect_server`."""
        with ExitStack() as stack:
            server = stack.enter_context(
                launched(
                    "server",
                    "--grpc-port",
                    "0",
                    "--data-dir",
                    str(data_dir),
                    *server_extra,
                    expect=expect_server,
                    env=env,
                    log_path=log_dir / "server.log" if log_dir else None,
                )
            )
            gateway = stack.enter_context(
                launched(
                    "gateway",
                    "--grpc-target",
                    server.addresses["grpc"],
                    "--http-port",
                    "0",
                    expect=frozenset({"http"}),
                    env=env,
                    log_path=log_dir / "gateway.log" if log_dir else None,
                )
            )
            wait_until_answering(gateway.addresses["http"])
            yield cls(
                data_dir,
                gateway.addresses["http"],
                server.addresses["grpc"],
                [server, gateway],
                (env or {}).get("CRMGATE_DATABASE_URL"),
            )

    @property
    def output(self) -> list[str]:
        return [line for launched in self.processes for line in launched.output]

    def kill(self) -> None:
        """SIGKILL every process of the deployment (the context then skips the clean stop)."""
        for launched in self.processes:
            launched.kill()

    def admin(self, *args: str) -> str:
        env = {"CRMGATE_DATABASE_URL": self.database_url} if self.database_url else None
        return run_admin(self.data_dir, *args, env=env)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir}/crmgate.sqlite3"

    def log_records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.output if line.startswith("{")]

    def log_record(self, request_id: str, deadline: float = 5.0) -> dict[str, object]:
        """The call log line of a request (sent with X-Request-Id), once it is written."""
        (record,) = self.wait_for_logs(lambda r: r.get("request_id") == request_id, deadline)
        return record

    def wait_for_logs(
        self, matches: Callable[[dict[str, object]], bool], deadline: float = 5.0
    ) -> list[dict[str, object]]:
        """The log lines that match, once there is one (lines are written by a thread, a
        moment after the response)."""
        limit = time.monotonic() + deadline
        while True:
            found = [record for record in self.log_records() if matches(record)]
            if found:
                return found
            assert time.monotonic() < limit, "no matching log line"
            time.sleep(0.02)
