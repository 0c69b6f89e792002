"""crmgate as the benchmarks run it: default settings (INFO logging, default pools) unless
a case says otherwise, its log lines going to a file as under a service manager, with one
tenant 'bench' (reachable as 127.0.0.1)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.otlp import Collector
from tests.support.processes import CrmgateProcess

#: How the gateway reaches the server: `serve` with in-process calls or over a channel
#: within its one process, or `gateway` → `server` as two processes over gRPC.
KINDS = ("in-process", "channel", "split")
#: A request budget the benchmarks never reach.
UNREACHED = str(10**9)


@contextmanager
def crmgate(kind: str, env: dict[str, str] | None = None) -> Iterator[CrmgateProcess]:
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        start = (
            CrmgateProcess.start_split(data_dir, env=env, log_dir=data_dir)
            if kind == "split"
            else CrmgateProcess.start(data_dir, gateway_calls=kind, env=env, log_dir=data_dir)
        )
        with start as server:
            # Tens of thousands of calls a second from one key are far past the default
            # budget: one it never reaches keeps the budget's bookkeeping in the figures.
            server.admin(
                "tenant", "create", "bench", "--host", "127.0.0.1", "--request-limit", UNREACHED
            )
            yield server


def api_key(server: CrmgateProcess, kind: str) -> str:
    """A new key of the bench tenant for one surface ('c2c' or 'close')."""
    return server.admin("apikey", "create", "--tenant", "bench", "--kind", kind)


def pids(server: CrmgateProcess) -> list[int]:
    return [launched.process.pid for launched in server.processes]


def tracing_on(collector: Collector) -> dict[str, str]:
    """The variables that switch tracing on, exporting to `collector` (SDK defaults else)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
