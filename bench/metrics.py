"""What keeping Prometheus metrics costs: C2C health and C2C uploads through `serve` and
`gateway` → `server`, with metrics on (the default) beside the same deployment with
`CRMGATE_METRICS=0`, and beside the bare floors (bench/bare_*_server.py), all in the
same interleaved rounds.

Beside requests/s, the deployment's CPU time per request (all its processes, user +
system), which a machine shared with other work disturbs far less.

Target: metrics cost ≤ 5 % — on / off ≥ 0.95 in requests/s, and ≤ 1.05 in CPU per
request, for each deployment and workload. Further variants (tracing on, …) go into
VARIANTS; each is shown beside the baseline.
"""

from __future__ import annotations

import json
from base64 import b64encode
from contextlib import ExitStack

import psutil

from bench.bare import floor_server
from bench.c2c_upload import pdf
from bench.deployments import api_key, crmgate, pids
from bench.health import cpu_seconds
from bench.stats import Spread, interleave, target
from bench.wrk import requests_per_second

SECONDS = 3
#: label: environment of the crmgate processes (nothing: the defaults, metrics on).
VARIANTS: dict[str, dict[str, str]] = {
    "metrics on": {},
    "metrics off": {"CRMGATE_METRICS": "0"},
}
#: The variant the others are judged against, and the most each may cost.
BASELINE = "metrics off"
TARGETS = {"metrics on": 0.05}
DEPLOYMENTS = {"serve": "in-process", "gateway → server": "split"}
FLOOR = "bare floor"
#: One 32 KiB PDF a request: the whole upload path (JSON, base64, sniffing, storage).
UPLOAD_BODY = json.dumps(
    {
        "email": "user@example.com",
        "files": [
            {
                "filename": "bench.pdf",
                "mime_type": "application/pdf",
                "content": b64encode(pdf(32 * 1024)).decode(),
            }
        ],
    }
).encode()
#: workload: (floor module, floor path, crmgate path, body)
WORKLOADS = {
    "C2C health": ("bench.bare_json_server", "/api/c2c/health", "/api/c2c/health", None),
    "C2C upload (32 KiB PDF)": ("bench.bare_upload_server", "/c2c", "/api/c2c/contacts/assets", UPLOAD_BODY),
}  # fmt: skip


def main() -> None:
    with ExitStack() as stack:
        # workload → case → (url, headers, pids, body)
        cases: dict[str, dict[str, tuple[str, dict[str, str], list[int], bytes | None]]] = {}
        for workload, (module, floor_path, _, body) in WORKLOADS.items():
            url, pid = stack.enter_context(floor_server(module))
            cases[workload] = {FLOOR: (url + floor_path, {}, [pid], body)}
        for deployment, kind in DEPLOYMENTS.items():
            for variant, env in VARIANTS.items():
                server = stack.enter_context(crmgate(kind, env or None))
                server.admin(
                    "contact", "create", "--tenant", "bench", "--email", "user@example.com"
                )
                headers = {
                    "X-Api-Version": "v1",
                    "Authorization": f"Bearer {api_key(server, 'c2c')}",
                    "Content-Type": "application/json",
                }
                for workload, (_, _, path, body) in WORKLOADS.items():
                    case = (server.http_url + path, headers, pids(server), body)
                    cases[workload][f"{deployment}, {variant}"] = case
        cpu: dict[str, list[float]] = {}

        def measure(workload: str, label: str) -> float:
            url, headers, processes, body = cases[workload][label]
            watched = [psutil.Process(pid) for pid in processes]
            before = cpu_seconds(watched)
            rps = requests_per_second(
                url, headers, seconds=SECONDS, method="POST" if body else "GET", body=body
            )
            used = cpu_seconds(watched) - before
            cpu.setdefault(f"{workload}: {label}", []).append(used / (rps * SECONDS) * 1e6)
            return rps

        for labels in cases.values():  # warm up (and fill the key cache)
            for url, headers, _, body in labels.values():
                method = "POST" if body else "GET"
                requests_per_second(url, headers, seconds=1, method=method, body=body)
        rps = interleave(
            {
                f"{workload}: {label}": lambda w=workload, label=label: measure(w, label)
                for workload, labels in cases.items()
                for label in labels
            }
        )
    report(rps, {label: Spread(tuple(values)) for label, values in cpu.items()})


def report(rps: dict[str, Spread], cpu: dict[str, Spread]) -> None:
    rounds = len(next(iter(rps.values())).values)
    print(
        f"Metrics cost: wrk -t1 -c32 for {SECONDS} s a case, {rounds} interleaved rounds;"
        " req/s and CPU us per request, median (min-max)"
    )
    for workload in WORKLOADS:
        floor = f"{workload}: {FLOOR}"
        print(f"  {workload}")
        print(f"    {FLOOR:<32}{rps[floor].show('.0f')} req/s  {cpu[floor].show('.0f')} us")
        for deployment in DEPLOYMENTS:
            baseline = f"{workload}: {deployment}, {BASELINE}"
            for variant in VARIANTS:
                case = f"{workload}: {deployment}, {variant}"
                line = (
                    f"    {deployment + ', ' + variant:<32}{rps[case].show('.0f')} req/s  "
                    f"{cpu[case].show('.0f')} us  of floor {(rps[case] / rps[floor]).show('.0%')}"
                )
                print(line)
                if variant in TARGETS:
                    cost = TARGETS[variant]
                    name = f"{workload}, {deployment}: {variant} / {BASELINE}"
                    throughput, per_request = rps[case] / rps[baseline], cpu[case] / cpu[baseline]
                    print(
                        f"      {variant} / {BASELINE}: req/s {throughput.show('.1%')} "
                        f"{target(name + ' req/s', throughput, at_least=1 - cost)}; CPU per "
                        f"request {per_request.show('.1%')} "
                        f"{target(name + ' CPU per request', per_request, at_most=1 + cost)}"
                    )


if __name__ == "__main__":
    main()
