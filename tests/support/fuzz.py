"""Schemathesis against a live crmgate: each surface's description, with each kind of
credential and with none, checked for 5xx, undocumented statuses and responses that do not
match the description. `make test` runs a few cases per operation; `make fuzz` many
(CRMGATE_FUZZ_EXAMPLES, CRMGATE_FUZZ_SECONDS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import CrmgateProcess

ROOT = Path(__file__).parents[2]
GENERATED = ROOT / "generated" / "openapi"
CONFORMANCE = (
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
#: No 5xx: voyzu's own check lets its documented 540 (a domain error) through.
SERVER_ERRORS = {"voyzu": "no_unanticipated_error"}
PASSWORD = "fuzz-password-1234"


@dataclass(frozen=True)
class Credentials:
    c2c_key: str
    close_key: str
    voyzu_session: str

    def arguments(self, surface: str) -> list[str]:
        """The schemathesis options that present this surface's credential."""
        if surface == "c2c":
            return ["-H", f"Authorization: Bearer {self.c2c_key}"]
        if surface == "close":
            return ["--auth", f"{self.close_key}:"]
        return ["-H", f"Cookie: voyzu_session_id={self.voyzu_session}"]


def provision(crmgate: CrmgateProcess) -> Credentials:
    """A tenant on the host the fuzzer calls (127.0.0.1), a contact, a paid user and a key
    of each kind; the voyzu session signed in over HTTP."""
    crmgate.admin("tenant", "create", "fuzz", "--host", "127.0.0.1")
    crmgate.admin("contact", "create", "--tenant", "fuzz", "--email", "ada@fuzz.test")
    crmgate.admin(
        "user", "create", "--tenant", "fuzz", "--email", "u@fuzz.test",
        "--password", PASSWORD, "--plan", "paid",
    )  # fmt: skip
    c2c_key = crmgate.admin("apikey", "create", "--tenant", "fuzz", "--kind", "c2c")
    close_key = crmgate.admin("apikey", "create", "--tenant", "fuzz", "--kind", "close")
    return Credentials(c2c_key, close_key, _sign_in(crmgate))


def _sign_in(crmgate: CrmgateProcess) -> str:
    body = json.dumps({"Email": "u@fuzz.test", "Password": PASSWORD}).encode()
    request = urllib.request.Request(crmgate.http_url + "/api/auth", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["SessionId"]


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    operations: int
    cases: int
    failures: int
    output: str

    def line(self) -> str:
        return f"{self.operations} operations, {self.cases} cases, {self.failures} failures"


def fuzz(crmgate: CrmgateProcess, surface: str, extra: list[str], report_dir: Path) -> Outcome:
    """One schemathesis run over a surface's description."""
    examples = os.environ.get("CRMGATE_FUZZ_EXAMPLES", "3")
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", str(GENERATED / f"{surface}.json"),
        "--url", crmgate.http_url,
        "--checks", ",".join((SERVER_ERRORS.get(surface, "not_a_server_error"), *CONFORMANCE)), "--max-examples", examples,
        "--generation-with-security-parameters", "false", "--no-color", "--workers", "1",
        "--report", "json", "--report-dir", str(report_dir), "--seed", "1",
        "--phases", "examples,coverage,fuzzing", *extra,
    ]  # fmt: skip
    seconds = os.environ.get("CRMGATE_FUZZ_SECONDS")
    if seconds:
        command += ["--max-time", seconds]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env)
    (report,) = report_dir.glob("*.json")
    figures = json.loads(report.read_text())
    return Outcome(
        done.returncode,
        figures["operations"]["tested"],
        figures["test_cases"]["generated"],
        figures["test_cases"]["with_failures"] + len(figures["errors"]),
        done.stdout[-20000:] + done.stderr[-5000:],
    )
