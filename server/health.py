"""Readiness: whether what this process needs — its database and its object storage —
answers. Probed every PROBE_INTERVAL seconds, off the request path and on threads of its
own (so probes never queue behind the work they watch); gRPC health and /readyz report
the latest result, which answering never blocks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from server.database.connection import database, unit_of_work
from server.objects import ObjectStorage

log = logging.getLogger("crmgate.health")

PROBE_INTERVAL = 1.0
#: A probe taking longer than this counts as down (an unreachable host may hang).
PROBE_TIMEOUT = 3.0

Probe = Callable[[], object]
#: Told whether the process is ready, each time that changes.
Listener = Callable[[bool], Awaitable[None]]


def probe_database() -> None:
    unit_of_work(lambda: database.execute_sql("SELECT 1").fetchone())


class Readiness:
    def __init__(self, storage: ObjectStorage) -> None:
        self._probes: dict[str, Probe] = {"database": probe_database, "storage": storage.check}
        self._up = dict.fromkeys(self._probes, True)
        self._listeners: list[Listener] = []
        self._threads = ThreadPoolExecutor(len(self._probes), thread_name_prefix="crmgate-probe")

    def checks(self) -> Mapping[str, bool]:
        """Each component and whether it answered the latest probe."""
        return dict(self._up)

    @property
    def ready(self) -> bool:
        return all(self._up.values())

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def probe(self) -> None:
        """Probe every component once; listeners hear when readiness changed."""
        was_ready = self.ready
        names = list(self._probes)
        answers = await asyncio.gather(*(self._answers(self._probes[name]) for name in names))
        for name, up in zip(names, answers, strict=True):
            if up != self._up[name]:
                log.warning("%s %s", name, "answers again" if up else "does not answer")
            self._up[name] = up
        if self.ready != was_ready:
            for listener in self._listeners:
                await listener(self.ready)

    async def _answers(self, probe: Probe) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._threads, probe), PROBE_TIMEOUT)
        except Exception:
            return False
        return True

    async def watch(self) -> None:
        """Probe forever, PROBE_INTERVAL apart (run it as a task; cancel it to stop)."""
        while True:
            await self.probe()
            await asyncio.sleep(PROBE_INTERVAL)
