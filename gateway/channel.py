"""How a gateway reaches any number of servers: one grpc.aio channel, balanced round-robin
over every address, with keepalive, quick reconnects, and retries of the methods the
contract marks idempotent (`idempotency_level`) — all through gRPC's own service config.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable

import grpc
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions

from gateway.contract import MAX_MESSAGE_BYTES

#: gRPC name schemes a target may already use (`dns:///crmgate-server:50051`, …).
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "xds:")
_RETRIED = (MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT)
#: Tries of an idempotent call whose server went away (the first included).
MAX_ATTEMPTS = 4


def channel_target(spec: str) -> str:
    """`host:port[,host:port…]` (names resolved once, now) or a gRPC name, as one target.

    A list becomes gRPC's `ipv4:`/`ipv6:` address list, so the round-robin policy spreads
    calls over all of them; a `dns:///name:port` target follows the name's records.
    """
    spec = spec.strip()
    if spec.startswith(_SCHEMES):
        return spec
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    if not parts:
        raise ValueError("no gRPC target given")
    addresses = [_resolve(part) for part in parts]
    families = {family for family, _ in addresses}
    if len(families) > 1:
        raise ValueError("gRPC targets must all be IPv4 or all IPv6")
    family = families.pop()
    return f"{family}:" + ",".join(address for _, address in addresses)


def _resolve(host_port: str) -> tuple[str, str]:
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{host_port!r} is not host:port")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        ip = ipaddress.ip_address(info[0][4][0])
    if ip.version == 6:
        return "ipv6", f"[{ip}]:{port}"
    return "ipv4", f"{ip}:{port}"


def retried_methods(files: Iterable[FileDescriptor]) -> list[MethodDescriptor]:
    """The methods whose contract says a second try is safe."""
    return [
        method
        for file in files
        for service in file.services_by_name.values()
        for method in service.methods
        if method.GetOptions().idempotency_level in _RETRIED
    ]


def service_config(files: Iterable[FileDescriptor]) -> str:
    """Round-robin over every address; idempotent methods retried on UNAVAILABLE (their
    server died or restarts), on another server, with a short backoff."""
    names = [
        {"service": method.containing_service.full_name, "method": method.name}
        for method in retried_methods(files)
    ]
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if names:
        config["methodConfig"] = [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": MAX_ATTEMPTS,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


def open_channel(spec: str, files: Iterable[FileDescriptor]) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        channel_target(spec),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.service_config", service_config(files)),
            ("grpc.enable_retries", 1),
            # A server that comes back is used again within about a second.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # Dead peers behind a silent network are noticed, idle connections kept warm.
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
