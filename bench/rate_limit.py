"""What the rate limits cost on the hot path: requests/s of authenticated calls through
`crmgate serve` (in-process calls, SQLite) at default settings but for a request budget
the load never reaches, beside the same deployment with every limit off, measured in the
same run, interleaved. Two calls: C2C health (an
API key the process has cached: the budget's bookkeeping is all it adds) and voyzu
`users/list` (a session: each call also reads the caller's address's failure count, as it
looks the session up). Target: health with limits ≥ 90 % of without.
"""

from __future__ import annotations

import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

import requests

from bench.deployments import UNREACHED
from bench.stats import ROUNDS
from bench.wrk import requests_per_second
from tests.support.processes import CrmgateProcess

PASSWORD = "bench password 1"
TARGET = 0.90
#: Every limit off: no budgets, no lockouts.
OFF = {
    "CRMGATE_RATE_LIMIT": "0",
    "CRMGATE_AUTH_ACCOUNT_FAILURES": "0",
    "CRMGATE_AUTH_ADDRESS_FAILURES": "0",
}


def main(seconds: int = 3) -> int:
    targets: dict[str, dict[str, tuple[str, dict[str, str], str]]] = {}
    with ExitStack() as stack:
        for label, env in (
            ("limits off", OFF),
            ("limits on", {}),
        ):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(
                CrmgateProcess.start(data_dir, env={"CRMGATE_LOG_LEVEL": "WARNING", **env})
            )
            limit = ("--request-limit", UNREACHED) if not env else ()
            server.admin("tenant", "create", "bench", *limit)
            key = server.admin("apikey", "create", "--tenant", "bench", "--kind", "c2c")
            server.admin(
                "user", "create", "--tenant", "bench", "--email", "b@example.com",
                "--password", PASSWORD,
            )  # fmt: skip
            auth = requests.post(
                server.http_url + "/api/auth",
                json={"Email": "b@example.com", "Password": PASSWORD},
                timeout=30,
            )
            session = auth.cookies["voyzu_session_id"]
            targets[label] = {
                "C2C health (API key)": (
                    server.http_url + "/api/c2c/health",
                    {"X-Api-Version": "v1", "Authorization": f"Bearer {key}"},
                    "GET",
                ),
                "voyzu users/list (session)": (
                    server.http_url + "/api/users/list",
                    {"Cookie": f"voyzu_session_id={session}"},
                    "POST",
                ),
            }
        for calls in targets.values():
            for url, headers, method in calls.values():
                requests_per_second(url, headers, seconds=1, method=method)  # warm up
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(ROUNDS):
            for label, calls in targets.items():
                for call, (url, headers, method) in calls.items():
                    rps = requests_per_second(url, headers, seconds=seconds, method=method)
                    samples.setdefault((call, label), []).append(rps)
    print(f"Rate limits' cost, wrk -t1 -c32, {ROUNDS} interleaved rounds (min / median / max)")
    met = True
    for call in targets["limits off"]:
        off = statistics.median(samples[(call, "limits off")])
        for label in targets:
            values = samples[(call, label)]
            rps = statistics.median(values)
            print(
                f"  {call:<28}{label:<13}{min(values):>8.0f} /{rps:>8.0f} /{max(values):>8.0f}"
                f" req/s  {rps / off:7.1%}"
            )
        if call.startswith("C2C"):
            ratio = statistics.median(samples[(call, "limits on")]) / off
            met &= ratio >= TARGET
            print(
                f"  target: health with limits ≥ {TARGET:.0%} of without: {'met' if met else 'MISSED'}"
            )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
