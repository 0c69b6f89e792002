"""One log line for each call that failed on the way to or from a server: unreachable,
past its deadline, a stream broken midway, a reply that cannot be read. No service logged
those (or not as the client saw them), and the gateway answers them itself (503, 504, …),
so without this line they would leave no trace. The method, the status and the request
id only: never metadata (credentials), an address, or the library's words."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from google.rpc import status_pb2

from gateway.contract import REQUEST_ID_KEY, error_reason, status_code

log = logging.getLogger("crmgate.gateway")


def log_upstream_failure(
    method: str, metadata: Sequence[tuple[str, str]], status: status_pb2.Status
) -> None:
    """A call that failed in transport (`status` is the gateway's own, made from the bare
    gRPC code): a warning, so it shows at every level but ERROR."""
    fields = {
        "method": method,
        "status": status_code(status).name,
        "reason": error_reason(status),
        "request_id": next((value for key, value in metadata if key == REQUEST_ID_KEY), None),
    }
    log.warning("upstream failed", extra={"rpc": fields})
