"""Peak memory of a C2C upload in each crmgate process: `crmgate gateway` + `crmgate server`
(split mode) and `crmgate serve`, for a 1 x 25 MiB PDF body and a 10 x 5 MiB one.

Cold: every measurement runs on freshly started processes (after one small upload, so
lazily loaded libraries are not counted), with the peak reset just before the request
(`echo 5 > /proc/PID/clear_refs`, then VmHWM - VmRSS from /proc/PID/status); warm: the
same request again on those processes, whose allocator has seen one already. Rounds
interleave deployments and cases; min/median/max per process, as a ratio of the request
body. Target (issue 11): at most 2x the body in every process, in split mode and in serve
mode (which was about 2.0x before uploads were streamed). Exits 1 when one is missed.

    .venv/bin/python -m bench.c2c_split_memory [--rounds N]   (or: make bench BENCH=c2c_split_memory)
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.c2c_upload import pdf
from bench.stats import ROUNDS
from tests.support.processes import CrmgateProcess

MiB = 1024 * 1024
TARGET = 2.0
LOG_ENV = {"CRMGATE_LOG_LEVEL": "WARNING"}
CASES = {"1 x 25 MiB PDF": [25 * MiB - 1024], "10 x 5 MiB PDFs": [5 * MiB - 1024] * 10}
#: A 1x1 PNG: the warm-up loads Pillow and libmagic before anything is measured.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def body(files: list[tuple[str, str, bytes]]) -> bytes:
    return json.dumps(
        {
            "email": "user@example.com",
            "files": [
                {"filename": name, "mime_type": kind, "content": base64.b64encode(data).decode()}
                for name, kind, data in files
            ],
        }
    ).encode()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@contextmanager
def deployment(mode: str) -> Iterator[tuple[str, dict[str, str], dict[str, int]]]:
    """A fresh deployment with a tenant, a contact and a key: (URL, headers, pids by
    process name), warmed up by one small upload."""
    with tempfile.TemporaryDirectory() as data_dir:
        start = CrmgateProcess.start_split if mode == "split" else CrmgateProcess.start
        with start(Path(data_dir), env=LOG_ENV) as crmgate:
            crmgate.admin("tenant", "create", "bench")
            crmgate.admin("contact", "create", "--tenant", "bench", "--email", "user@example.com")
            key = crmgate.admin("apikey", "create", "--tenant", "bench", "--kind", "c2c")
            headers = {
                "X-Api-Version": "v1",
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
            }
            names = ["server", "gateway"] if mode == "split" else ["serve"]
            pids = {name: p.process.pid for name, p in zip(names, crmgate.processes, strict=True)}
            url = crmgate.http_url + "/api/c2c/contacts/assets"
            warm = body([("w.pdf", "application/pdf", pdf(4096)), ("w.png", "image/png", PNG)])
            post(url, warm, headers)
            yield url, headers, pids


def post(url: str, payload: bytes, headers: dict[str, str]) -> None:
    answer = requests.post(url, data=payload, headers=headers, timeout=600)
    assert answer.status_code == 201, answer.text[:300]


def peak_growth(url: str, payload: bytes, headers: dict[str, str], pids: dict[str, int]) -> dict:
    """Each process's peak RSS growth during one request, in bytes."""
    before = {}
    for name, pid in pids.items():
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before[name] = status_kib(pid, "VmRSS")
    post(url, payload, headers)
    return {name: status_kib(pid, "VmHWM") - before[name] for name, pid in pids.items()}


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    rounds = parser.parse_args(argv).rounds
    payloads = {
        case: body([(f"doc{i}.pdf", "application/pdf", pdf(size)) for i, size in enumerate(sizes)])
        for case, sizes in CASES.items()
    }
    growth: dict[tuple[str, str, str, str], list[int]] = {}
    for round_number in range(rounds):
        for mode in ("split", "serve") if round_number % 2 == 0 else ("serve", "split"):
            for case, payload in payloads.items():
                with deployment(mode) as (url, headers, pids):
                    for state in ("cold", "warm"):
                        for name, grown in peak_growth(url, payload, headers, pids).items():
                            growth.setdefault((mode, name, state, case), []).append(grown)
    print(f"C2C upload peak RSS growth per process, {rounds} rounds (min / median / max)")
    missed = []
    for case, payload in payloads.items():
        size = len(payload)
        print(f"  {case}: request body {size / MiB:.1f} MiB")
        for (mode, name, state, each_case), values in sorted(growth.items()):
            if each_case != case:
                continue
            low, mid, high = min(values), statistics.median(values), max(values)
            ratio = high / size
            verdict = "ok" if ratio <= TARGET else "MISSED"
            print(
                f"    {mode:<6}{name:<8}{state:<5}+{low / MiB:6.1f} / {mid / MiB:6.1f} / {high / MiB:6.1f} MiB"
                f"  = x{low / size:4.2f} / x{mid / size:4.2f} / x{high / size:4.2f} of body"
                f"  (target max ≤ x{TARGET:.0f}: {verdict})"
            )
            if ratio > TARGET:
                missed.append(f"{mode} {name} {state} {case}")
    if missed:
        print("missed:", ", ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
