"""The JSON log lines, as a process writes them: call lines (server.logs.log_call) and
ordinary records come out with the same fields, in order, all written by exit."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

from server.logs import JsonFormatter, call_fields

SCRIPT = """
import logging
from server import logs
logs.configure("INFO")
logs.log_call("/c2c.v1.ContactAssets/Health", "OK", 0.1, "acme", "r-1")
logging.getLogger("crmgate.test").warning("disk %s at %d%%", "data", 91)
try:
    raise ValueError("bad")
except ValueError:
    logging.getLogger("crmgate.test").exception("failed")
logging.getLogger("crmgate.test").debug("not written at INFO")
for i in range(600):  # more than one batch, all written at exit
    logs.log_call("/c2c.v1.ContactAssets/Health", "OK", 0.1, None, f"n-{i}")
"""
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_lines_are_json_with_their_fields_in_order_and_all_written_by_exit() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    for line in lines:
        assert TIMESTAMP.fullmatch(line.pop("ts"))
    exc = lines[2].pop("exc")
    assert exc.startswith("Traceback (most recent call last):")
    assert exc.endswith("ValueError: bad")
    assert lines[:3] == [
        {
            "level": "info",
            "logger": "crmgate.rpc",
            "msg": "rpc",
            "method": "/c2c.v1.ContactAssets/Health",
            "status": "OK",
            "duration_ms": 0.1,
            "tenant": "acme",
            "request_id": "r-1",
        },
        {"level": "warning", "logger": "crmgate.test", "msg": "disk data at 91%"},
        {"level": "error", "logger": "crmgate.test", "msg": "failed"},
    ]
    assert [line["request_id"] for line in lines[3:]] == [f"n-{i}" for i in range(600)]


def test_call_lines_follow_the_level() -> None:
    script = SCRIPT.replace('configure("INFO")', 'configure("WARNING")')
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert [json.loads(line)["msg"] for line in result.stderr.splitlines()] == [
        "disk data at 91%",
        "failed",
    ]


def test_a_call_line_is_the_text_logging_writes_for_the_same_fields() -> None:
    """log_call's lines skip the logging module and the encoder: their text is still a
    record's, to the byte, at every millisecond (the timestamp's text is reused within
    one), whatever the values hold (quotes, backslashes, control characters, non-ASCII),
    with and without a tenant and a trace id."""
    formatter = JsonFormatter()
    values = [
        ("/c2c.v1.ContactAssets/Health", "OK", 0.25, 'a "quoted" tenant, ñ', "r-1", None),
        ("/files.v1.Files/GetFile", "NOT_FOUND", 1234.5, None, 'id\\"\n\x00€', "0af7651916cd43dd"),
        ("/crm.v1.Crm/ListUsers", "OK", 1e-05, "t\u2028", "r", None),
        ("/crm.v1.Crm/ListUsers", "INTERNAL", 12.0, "acme", "r-2", '"t"'),
    ]
    for created in (1700000000.9995, 1700000000.9996, 1700000001.0004, 1700000001.5):
        for call in values:
            record = logging.LogRecord("crmgate.rpc", logging.INFO, __file__, 0, "rpc", None, None)
            record.created, record.rpc = created, call_fields(*call)
            assert formatter.format_call((created, *call)) == formatter.format(record)
