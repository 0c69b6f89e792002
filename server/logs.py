"""One JSON object per log line, so call logs can be searched by field.

Only what a record explicitly carries is written: request bodies, keys and file
contents are never handed to the logger in the first place.
"""

from __future__ import annotations

import atexit
import copy
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

#: Libraries whose DEBUG lines carry what they send and receive: peewee's SQL with its
#: parameters (key, session and password hashes), botocore's signed requests and the
#: bodies of S3 transfers. They never log below INFO, whatever CRMGATE_LOG_LEVEL says.
PAYLOAD_LOGGERS = ("peewee", "botocore", "boto3", "s3transfer", "urllib3")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rpc = getattr(record, "rpc", None)
        if rpc:
            entry.update(rpc)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted already, when the record was queued
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


class _Enqueue(logging.handlers.QueueHandler):
    """Queues a record as fields, not as text: the message with its arguments merged and
    any traceback as text (it cannot cross threads as objects), formatted by the listener."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


def configure(level: str) -> None:
    """JSON lines on stderr, written by a listener thread: a call on the event loop only
    hands its record to a queue, never formats or writes it (the hot path stays fast at
    INFO). Records still queued are written at exit."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonFormatter())
    listener = logging.handlers.QueueListener(records, writer, respect_handler_level=False)
    listener.start()
    atexit.register(listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(records)]
    root.setLevel(level)
    # aiohttp's access log repeats what the rpc line says.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
