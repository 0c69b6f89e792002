"""Load from a second process: wrk, parsed into requests per second."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile


def requests_per_second(
    url: str,
    headers: dict[str, str],
    *,
    seconds: int = 5,
    connections: int = 32,
    method: str = "GET",
    body: bytes | None = None,
) -> float:
    """`body`: sent with every request (ASCII, such as JSON)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for this benchmark: apt-get install wrk")
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f'wrk.method = "{method}"\n')
        if body is not None:
            script.write(f"wrk.body = [==[{body.decode('ascii')}]==]\n")
        script.flush()
        command += ["-s", script.name]
        output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise SystemExit(f"{url} answered {non_2xx.group(1)} errors under load:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))
