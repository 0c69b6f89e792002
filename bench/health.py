"""C2C health requests/s through the gateway (a key check through the whole call
pipeline), at the default INFO logging beside the same deployment at WARNING, and beside a
bare aiohttp JSON handler, all measured in the same interleaved rounds.

Beside each figure: the deployment's CPU time per request (all its processes, user +
system), which a machine shared with other work disturbs far less than requests/s, and
the ratio to bare aiohttp that it gives (bare's CPU per request over crmgate's).

Targets: INFO costs ≤ 10 % of throughput (INFO / WARNING ≥ 0.90, in-process and split);
`serve` with in-process calls ≥ 60 % of bare aiohttp, `gateway` → `server` over gRPC ≥ 15 %.
Split mode is also shown against its own floor, a bare aiohttp handler calling a bare
grpc.aio server in a second process (bench/bare_grpc_pair.py): the share of bare aiohttp
that floor reaches is the most any gateway → server deployment on these libraries can.
Tracing on (OTLP/HTTP to a collector the benchmark runs), every request traced and 1 in
100 sampled, is shown beside the default (off), without a target: what tracing costs.
"""

from __future__ import annotations

from contextlib import ExitStack

import psutil

from bench.bare import floor_server
from bench.deployments import api_key, crmgate, pids, tracing_on
from bench.stats import Spread, interleave, target
from bench.wrk import requests_per_second
from tests.support.otlp import otlp_collector

SECONDS = 3
#: One trace in a hundred recorded and exported (the rest only get ids, for the logs).
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
BARE = "bare aiohttp JSON handler"
#: The same handler on asyncio's own loop: what the ratios would be against it.
BARE_ASYNCIO = "bare aiohttp JSON handler, asyncio's loop"
#: What split mode can be at best on these libraries (bench/bare_grpc_pair.py).
BARE_PAIR = "bare aiohttp → bare grpc.aio, two processes"
FLOORS = (BARE, BARE_ASYNCIO, BARE_PAIR)
#: Tracing on, as operators may run it: every request, or a sample of them.
TRACED = {"": {}, ", 1 % sampled": SAMPLED}
#: label: (deployment, log level, target against bare, traced: None, or the sampling);
#: INFO, untraced, is crmgate's default.
DEPLOYMENTS = {
    "serve, in-process calls, INFO": ("in-process", "INFO", 0.60, None),
    "serve, in-process calls, WARNING": ("in-process", "WARNING", None, None),
    **{
        f"serve, in-process calls, tracing on{sampled}": ("in-process", "INFO", None, sampler)
        for sampled, sampler in TRACED.items()
    },
    "gateway → server over gRPC, INFO": ("split", "INFO", 0.15, None),
    "gateway → server over gRPC, WARNING": ("split", "WARNING", None, None),
    **{
        f"gateway → server over gRPC, tracing on{sampled}": ("split", "INFO", None, sampler)
        for sampled, sampler in TRACED.items()
    },
    "serve --gateway-calls channel, INFO": ("channel", "INFO", None, None),
}


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def main() -> None:
    cpu_per_request: dict[str, list[float]] = {}

    def measure(label: str, url: str, headers: dict[str, str], pids: list[int]) -> float:
        processes = [psutil.Process(pid) for pid in pids]
        before = cpu_seconds(processes)
        rps = requests_per_second(url, headers, seconds=SECONDS)
        used = cpu_seconds(processes) - before
        cpu_per_request.setdefault(label, []).append(used / (rps * SECONDS) * 1e6)
        return rps

    with ExitStack() as stack:
        bare_url, bare_pid = stack.enter_context(floor_server("bench.bare_json_server"))
        collector = stack.enter_context(otlp_collector(keep=False))
        plain_url, plain_pid = stack.enter_context(
            floor_server("bench.bare_json_server", "asyncio")
        )
        pair_url, pair_pid = stack.enter_context(floor_server("bench.bare_grpc_pair"))
        pair_pids = [pair_pid, *(child.pid for child in psutil.Process(pair_pid).children())]
        targets = {
            BARE: (bare_url + "/api/c2c/health", {}, [bare_pid]),
            BARE_ASYNCIO: (plain_url + "/api/c2c/health", {}, [plain_pid]),
            BARE_PAIR: (pair_url + "/api/c2c/health", {}, pair_pids),
        }
        for label, (deployment, level, _, traced) in DEPLOYMENTS.items():
            # INFO, untraced, is the default: those deployments get no setting at all.
            env = {"CRMGATE_LOG_LEVEL": level} if level != "INFO" else {}
            if traced is not None:
                env.update(tracing_on(collector), **traced)
            server = stack.enter_context(crmgate(deployment, env or None))
            headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {api_key(server, 'c2c')}"}
            targets[label] = (server.http_url + "/api/c2c/health", headers, pids(server))
        for url, headers, _ in targets.values():
            requests_per_second(url, headers, seconds=1)  # warm up (and fill the key cache)
        rps = interleave(
            {label: lambda label=label, t=t: measure(label, *t) for label, t in targets.items()}
        )
    cpu = {label: Spread(tuple(values)) for label, values in cpu_per_request.items()}
    rounds = len(rps[BARE].values)
    print(
        f"C2C health, wrk -t1 -c32 for {SECONDS} s from a second process, {rounds} interleaved"
        " rounds: req/s, CPU us per request, ratios; median (min-max)"
    )
    for label, spread in rps.items():
        line = f"  {label:<52}{spread.show('.0f')} req/s  {cpu[label].show('.0f')} us"
        if label == BARE_PAIR:
            line += f"  of bare {(spread / rps[BARE]).show('.0%')} (by CPU {(cpu[BARE] / cpu[label]).show('.0%')})"
        elif label not in FLOORS:
            ratio = spread / rps[BARE]
            floor = DEPLOYMENTS[label][2]
            # The same ratio from CPU per request, which a loaded machine disturbs less
            # (it slows the bare handler's requests/s too, flattering the ratio).
            line += f"  of bare {ratio.show('.0%')} (by CPU {(cpu[BARE] / cpu[label]).show('.0%')})"
            if floor is not None:
                line += "  " + target(label + " / bare", ratio, at_least=floor)
                line += f"  (of bare on asyncio's loop {(spread / rps[BARE_ASYNCIO]).show('.0%')})"
            if DEPLOYMENTS[label][0] == "split":
                line += f"  (of the bare pair {(spread / rps[BARE_PAIR]).show('.0%')})"
        print(line)
    for deployment in ("serve, in-process calls", "gateway → server over gRPC"):
        for sampled in TRACED:
            on, off = f"{deployment}, tracing on{sampled}", f"{deployment}, INFO"
            name = f"{deployment}: tracing on{sampled} / off"
            print(
                f"  {name:<60}{(rps[on] / rps[off]).show('.0%')}"
                f"  (CPU per request: {(cpu[on] / cpu[off]).show('.0%')} of off)"
            )
    print(f"  spans the collector received: {collector.received}")
    for info, warning in (
        ("serve, in-process calls, INFO", "serve, in-process calls, WARNING"),
        ("gateway → server over gRPC, INFO", "gateway → server over gRPC, WARNING"),
    ):
        ratio = rps[info] / rps[warning]
        name = f"{info.rsplit(',', 1)[0]}: INFO / WARNING"
        print(
            f"  {name:<60}{ratio.show('.0%')}  {target(name, ratio, at_least=0.90)}"
            f"  (CPU per request at INFO: {(cpu[info] / cpu[warning]).show('.0%')} of WARNING)"
        )


if __name__ == "__main__":
    main()
