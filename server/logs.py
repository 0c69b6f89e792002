"""One JSON object per log line, so call logs can be searched by field.

Only what a record explicitly carries is written: request bodies, keys and file
contents are never handed to the logger in the first place. A line logged within a call
carries its `request_id`, and while tracing is on its `trace_id`.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, TextIO

from gateway import tracing
from gateway.json_text import text_encoder
from gateway.request_ids import current_request_id

#: Records one write to the stream carries at most.
BATCH = 256
RPC_LOGGER = logging.getLogger("crmgate.rpc")
#: A call's line as log_call queues it: (time.time(), method, status, duration_ms, tenant
#: or None, request_id, trace_id or None). Its fields become a dict (`call_fields`) or
#: text (`JsonFormatter.format_call`) only where the line is written.
CallLine = tuple[float, str, str, float, str | None, str, str | None]
#: The writer's queue once configure() ran; until then log_call goes through logging.
_records: queue.SimpleQueue[logging.LogRecord | CallLine] | None = None

#: Libraries whose DEBUG lines carry what they send and receive: peewee's SQL with its
#: parameters (key, session and password hashes), botocore's signed requests and the
#: bodies of S3 transfers. They never log below INFO, whatever CRMGATE_LOG_LEVEL says.
PAYLOAD_LOGGERS = ("peewee", "botocore", "boto3", "s3transfer", "urllib3")


class JsonFormatter(logging.Formatter):
    """The line's fields as JSON; the timestamp's text is reused within a millisecond
    (its date and time within a second) and the encoder built once (json.dumps with
    options builds a new one per call)."""

    _encode = staticmethod(text_encoder(default=str))
    _second: tuple[int, str] = (-1, "")
    _millisecond: tuple[int, int, str] = (-1, -1, "")
    #: What every call line holds before its own fields, as `format` writes it.
    _CALL_PREFIX = f'{{"ts": "%s", "level": "info", "logger": "{RPC_LOGGER.name}", "msg": "rpc", '

    def _timestamp(self, created: float) -> str:
        second = int(created)
        millisecond = int((created - second) * 1000)
        last = self._millisecond
        if last[0] == second and last[1] == millisecond:  # most lines at any load
            return last[2]
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        text = f"{self._second[1]}.{millisecond:03d}Z"
        self._millisecond = (second, millisecond, text)
        return text

    def format_call(self, line: CallLine) -> str:
        """A log_call line: the same text as `log.info("rpc", extra={"rpc": fields})`
        gives for its `call_fields(*line[1:])`, written straight from the line's values (each
        string JSON-quoted as the encoder quotes it; a float's text is its repr in JSON
        as in Python), its fixed part written once."""
        created, method, status, duration_ms, tenant, request_id, trace_id = line
        text = (
            self._CALL_PREFIX
            % self._timestamp(created)
            + f'"method": {_quote(method)}, "status": {_quote(status)}, '
            f'"duration_ms": {duration_ms!r}, '
            f'"tenant": {"null" if tenant is None else _quote(tenant)}, '
            f'"request_id": {_quote(request_id)}'
        )
        if trace_id is not None:
            return f'{text}, "trace_id": {_quote(trace_id)}}}'
        return text + "}"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
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
        return self._encode(entry)


class _Enqueue(logging.handlers.QueueHandler):
    """Queues a record as fields, not as text: the message with its arguments merged and
    any traceback as text (it cannot cross threads as objects), formatted by the writer.
    The record is ours alone (the root's only handler), so it is changed in place. A
    warning or worse wakes the writer at once (they are rare; call lines never do)."""

    def __init__(self, records: queue.SimpleQueue[Any], writer: _BatchWriter) -> None:
        super().__init__(records)
        self._writer = writer

    def enqueue(self, record: logging.LogRecord) -> None:
        super().enqueue(record)
        if record.levelno >= logging.WARNING:
            self._writer.wake()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # On the thread that logs, within the call (and trace) it logs for, if any.
        request_id, trace_id = current_request_id.get(), tracing.trace_id()
        if request_id is not None or trace_id is not None:
            fields = getattr(record, "rpc", None) or {}
            ids = {"request_id": request_id, "trace_id": trace_id}
            record.rpc = {**fields, **{k: v for k, v in ids.items() if v and k not in fields}}
        if record.args:
            record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


class _BatchWriter:
    """A thread that, every INTERVAL, formats what has queued and writes it in one write.
    It never waits on the queue itself: a waiting reader would be woken by every record,
    and each wake-up takes the GIL from the event loop (measured: a third of health
    throughput at INFO). Records still queued are written at stop."""

    INTERVAL = 0.05

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord | CallLine], stream: TextIO
    ) -> None:
        self._records, self._stream = records, stream
        self._formatter = JsonFormatter()
        self._stopping, self._woken = False, threading.Event()
        self._thread = threading.Thread(target=self._run, name="crmgate-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._woken.wait(self.INTERVAL)
            self._woken.clear()
            self._drain()
        self._drain()  # what was queued while the last drain ran

    def _drain(self) -> None:
        while True:
            lines: list[str] = []
            try:
                while len(lines) < BATCH:
                    item = self._records.get_nowait()
                    if isinstance(item, logging.LogRecord):
                        lines.append(self._formatter.format(item))
                    else:
                        lines.append(self._formatter.format_call(item))
            except queue.Empty:
                pass
            if lines:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            if len(lines) < BATCH:
                return

    def wake(self) -> None:
        """Write what has queued now, not at the next interval."""
        self._woken.set()

    def stop(self) -> None:
        self._stopping = True
        self._woken.set()
        self._thread.join()


def configure(level: str) -> None:
    """JSON lines on stderr, written by a thread in batches: a call on the event loop only
    builds a lean record and queues it, never formats or writes it (the hot path stays
    fast at INFO). Lines appear within _BatchWriter.INTERVAL, warnings and errors at
    once; those queued are written at exit."""
    # Fields no line carries, which every record would otherwise pay to collect
    # (the logging docs' "Optimization" section): caller frame, thread, process.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _records
    records: queue.SimpleQueue[logging.LogRecord | CallLine] = queue.SimpleQueue()
    writer = _BatchWriter(records, sys.stderr)
    atexit.register(writer.stop)
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(records, writer)]
    root.setLevel(level)
    _records = records
    # aiohttp's access log repeats what the rpc line says.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))


def log_call(
    method: str,
    status: str,
    duration_ms: float,
    tenant: str | None,
    request_id: str,
    trace_id: str | None = None,
) -> None:
    """One call's line at INFO on crmgate.rpc, the hot path's own entry: it queues only
    the time and the values, without the logging module's record (its creation and
    handler chain were most of INFO's cost per call) or a dict of fields."""
    if not RPC_LOGGER.isEnabledFor(logging.INFO):
        return
    line = (time.time(), method, status, duration_ms, tenant, request_id, trace_id)
    if _records is None:
        RPC_LOGGER.info("rpc", extra={"rpc": call_fields(*line[1:])})
    else:
        _records.put_nowait(line)


def call_fields(
    method: str,
    status: str,
    duration_ms: float,
    tenant: str | None,
    request_id: str,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """A call line's fields, in their order (trace_id only while tracing)."""
    fields = {
        "method": method,
        "status": status,
        "duration_ms": duration_ms,
        "tenant": tenant,
        "request_id": request_id,
    }
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields
