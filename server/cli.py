"""`crmgate`: serve, run the gRPC server or the gateway alone, and administer tenants."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from gateway import console, reference, tracing
from gateway.app import build_app
from gateway.calls import Caller, ChannelCaller
from gateway.contract import FILE_DESCRIPTORS
from gateway.forwarding import Network, parse_networks
from gateway.health import backend_checks, health_routes
from gateway.limits import DEFAULT_LIMITS, HttpLimits
from gateway.metrics import metrics_routes
from gateway.protocol import GatewayRunner
from gateway.surfaces import default_surfaces
from server import admin, logs
from server.config import SUPPORTED_LOCALES, Settings
from server.consistency import summary
from server.database.connection import connect, database, unit_of_work
from server.database.migrations import current_version
from server.runtime import Runtime


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env().with_overrides(
            data_dir=getattr(args, "data_dir", None),
            dev=getattr(args, "dev", None) or None,
            read_timeout=getattr(args, "read_timeout", None),
            max_large_uploads=getattr(args, "max_large_uploads", None),
            metrics_port=getattr(args, "metrics_port", None),
        )
        if hasattr(args, "trusted_proxy"):
            proxies = os.environ.get("CRMGATE_TRUSTED_PROXIES", "").split(",")
            args.trusted_networks = parse_networks([*args.trusted_proxy, *proxies])
        if hasattr(args, "service_name"):
            tracing.configure(args.service_name)  # only when OTEL_* asks for traces
    except ValueError as error:
        parser.error(str(error))
    return int(args.run(args, settings) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmgate", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC server and the gateway together")
    _http_flags(serve)
    _grpc_flags(serve)
    serve.add_argument("--data-dir", type=Path, help="default: $CRMGATE_DATA_DIR or ./var")
    serve.add_argument("--demo", action="store_true", help="bootstrap a demo tenant and key")
    serve.add_argument("--dev", action="store_true", help="development server conveniences")
    serve.add_argument(
        "--gateway-calls",
        choices=("in-process", "channel"),
        default="in-process",
        help="how the gateway reaches the services (default: in-process, no serialization)",
    )
    serve.set_defaults(run=run_serve, service_name="crmgate-serve")

    server = commands.add_parser("server", help="run only the gRPC server")
    _grpc_flags(server)
    server.add_argument("--data-dir", type=Path)
    server.add_argument("--metrics-host", default="127.0.0.1")
    server.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve GET /metrics (Prometheus) on this port; 0 picks a free one "
        "(default: $CRMGATE_METRICS_PORT, else no metrics listener)",
    )
    server.set_defaults(run=run_server, service_name="crmgate-server")

    gateway = commands.add_parser("gateway", help="run only the gateway, against a gRPC server")
    _http_flags(gateway)
    gateway.add_argument(
        "--grpc-target",
        required=True,
        metavar="TARGET",
        help="HOST:PORT[,HOST:PORT...] (balanced round-robin) or a gRPC name such as "
        "dns:///crmgate-server:50051",
    )
    gateway.add_argument("--dev", action="store_true")
    gateway.set_defaults(run=run_gateway, service_name="crmgate-gateway")

    _admin_parser(commands.add_parser("admin", help="manage tenants, keys and contacts"))
    return parser


def _http_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http-host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="honour X-Forwarded-Proto/Host from these peers (repeatable; also "
        "$CRMGATE_TRUSTED_PROXIES, comma-separated)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        help="close a connection whose client sends nothing this long mid-request "
        "(default: $CRMGATE_READ_TIMEOUT or 60)",
    )
    parser.add_argument(
        "--max-large-uploads",
        type=int,
        metavar="N",
        help="request bodies of the largest size read at once (bodies over 1 MiB share "
        "that room by their length); beyond, 503 with Retry-After "
        "(default: $CRMGATE_MAX_LARGE_UPLOADS or 4)",
    )


def _grpc_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grpc-host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=50051, help="0 picks a free port")


REQUEST_LIMIT_HELP = (
    "requests each of the tenant's keys and sessions may make per $CRMGATE_RATE_WINDOW "
    "(0: unlimited; default: $CRMGATE_RATE_LIMIT)"
)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _admin_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path)
    groups = parser.add_subparsers(required=True, metavar="OBJECT")

    tenant = groups.add_parser("tenant").add_subparsers(required=True, metavar="ACTION")
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument("name")
    create.add_argument("--host", action="append", default=[], help="bind a host (repeatable)")
    create.add_argument(
        "--locale", choices=SUPPORTED_LOCALES, help="default: $CRMGATE_DEFAULT_LOCALE or en"
    )
    create.add_argument(
        "--ignore-accept-language",
        action="store_true",
        help="always answer in the tenant's locale, whatever the caller's Accept-Language",
    )
    create.add_argument("--request-limit", type=_count, help=REQUEST_LIMIT_HELP)
    create.set_defaults(run=_admin(_create_tenant))
    limit = tenant.add_parser("request-limit", help="set a tenant's request budget")
    limit.add_argument("name")
    limit.add_argument("limit", type=_count, nargs="?", help=REQUEST_LIMIT_HELP + "; omit: default")
    limit.set_defaults(run=_admin(_set_request_limit))

    apikey = groups.add_parser("apikey").add_subparsers(required=True, metavar="ACTION")
    create = apikey.add_parser("create", help="issue a key; prints only the key")
    create.add_argument("--tenant", required=True)
    create.add_argument("--kind", choices=("c2c", "close"), required=True)
    create.add_argument("--label", default="")
    create.set_defaults(run=_admin(lambda a, _: print(admin.issue_key(a.tenant, a.kind, a.label))))
    revoke = apikey.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_admin(lambda a, _: admin.revoke_key(a.key_id)))
    listing = apikey.add_parser("list", help="list a tenant's keys (never the secrets)")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(run=_admin(_print_keys))

    user = groups.add_parser("user").add_subparsers(required=True, metavar="ACTION")
    create = user.add_parser("create", help="create a voyzu user; prints the user's id")
    create.add_argument("--tenant", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument(
        "--plan", choices=admin.PLANS, help="the tenant's plan (default: unchanged)"
    )
    create.set_defaults(
        run=_admin(
            lambda a, _: print(admin.create_user(a.tenant, a.email, a.password, a.plan).uuid)
        )
    )
    delete = user.add_parser("delete", help="delete a voyzu user and their sessions")
    delete.add_argument("--email", required=True)
    delete.set_defaults(run=_admin(lambda a, _: admin.delete_user(a.email)))

    contact = groups.add_parser("contact").add_subparsers(required=True, metavar="ACTION")
    create = contact.add_parser("create", help="create a contact")
    create.add_argument("--tenant", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--first-name", default="")
    create.add_argument("--last-name", default="")
    create.set_defaults(
        run=_admin(
            lambda a, _: print(
                admin.create_contact(a.tenant, a.email, a.first_name, a.last_name).uuid
            )
        )
    )

    fsck = groups.add_parser(
        "fsck",
        help="check that rows and stored objects match; exit status 1 on any mismatch",
        description="List every mismatch between the store and object storage, one a "
        "line: rows whose object is missing, objects and temp files nothing refers to "
        "(older than CRMGATE_ORPHAN_GRACE_SECONDS). Exit status 1 when there is any.",
    )
    fsck.add_argument(
        "--repair",
        action="store_true",
        help="remove orphan objects and temp files; delete media and spreadsheet rows "
        "whose object is gone; put completed uploads whose object is gone back to pending",
    )
    fsck.set_defaults(run=_admin(_fsck))

    migrate = groups.add_parser(
        "migrate",
        help="bring the database schema up to date and print its version",
        description="Every process migrates at start; this lets a deployment do it first, "
        "once (a Kubernetes Job), before servers roll out.",
    )
    migrate.set_defaults(
        run=_admin(lambda _a, _s: print(f"schema version {current_version(database.obj)}"))
    )


AdminAction = Callable[[argparse.Namespace, Settings], object]


def _admin(action: AdminAction) -> Callable[[argparse.Namespace, Settings], int]:
    """Wrap an admin action: open the store, run it, turn AdminError into exit status 1."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        connect(settings)
        try:
            action(args, settings)
        except admin.AdminError as error:
            print(f"crmgate: {error}", file=sys.stderr)
            return 1
        return 0

    return run


def _set_request_limit(args: argparse.Namespace, settings: Settings) -> None:
    limit = admin.set_request_limit(args.name, args.limit)
    print("default" if limit is None else limit)


def _create_tenant(args: argparse.Namespace, settings: Settings) -> None:
    tenant = admin.create_tenant(
        args.name,
        args.host,
        args.locale or settings.default_locale,
        honor_accept_language=not args.ignore_accept_language,
        request_limit=args.request_limit,
    )
    print(tenant.name)


def _print_keys(args: argparse.Namespace, settings: Settings) -> None:
    for key in admin.list_keys(args.tenant):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "active"
        print(f"{key.key_id}\t{key.kind}\t{state}\t{key.label}")


def _fsck(args: argparse.Namespace, settings: Settings) -> None:
    mismatches = admin.fsck(settings, args.repair)
    for mismatch in mismatches:
        print(mismatch)
    if mismatches:
        done = "repaired" if args.repair else "run with --repair to fix them"
        raise admin.AdminError(f"fsck: {summary(mismatches)} ({done})")
    print("fsck: no mismatches")


# ------------------------------------------------------------------------- serving


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(settings.log_level)
    runtime = Runtime.start(settings)
    demo = unit_of_work(admin.bootstrap_demo) if args.demo else None
    return run_loop(_serve(args, settings, runtime, demo))


async def _serve(
    args: argparse.Namespace,
    settings: Settings,
    runtime: Runtime,
    demo: admin.DemoCredentials | None,
) -> int:
    grpc_server = await runtime.grpc_server()
    grpc_port = grpc_server.add_insecure_port(f"{args.grpc_host}:{args.grpc_port}")
    await grpc_server.start()
    announce(f"grpc listening on {args.grpc_host}:{grpc_port}")
    caller: Caller
    if args.gateway_calls == "channel":
        caller = ChannelCaller(f"{args.grpc_host}:{grpc_port}")
    else:
        caller = runtime.in_process_caller()
    routes = [*runtime.health_routes(), *runtime.metrics_routes()]
    runner, http_url = await _start_gateway(caller, args, settings, routes)
    runtime.links.served_at = http_url
    if demo:
        announce_demo(http_url, demo)
    async with _watching(runtime):
        await _until_stopped()
    await runner.cleanup()
    await grpc_server.stop(grace=5)
    return 0


def run_server(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(settings.log_level)
    runtime = Runtime.start(settings)

    async def serve() -> int:
        grpc_server = await runtime.grpc_server()
        port = grpc_server.add_insecure_port(f"{args.grpc_host}:{args.grpc_port}")
        await grpc_server.start()
        announce(f"grpc listening on {args.grpc_host}:{port}")
        metrics = await _start_metrics(runtime, args.metrics_host, settings.metrics_port)
        async with _watching(runtime):
            await _until_stopped()
        if metrics is not None:
            await metrics.cleanup()
        await grpc_server.stop(grace=5)
        return 0

    return run_loop(serve())


def run_gateway(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(settings.log_level)

    async def serve() -> int:
        caller = ChannelCaller(args.grpc_target)
        routes = health_routes(backend_checks(caller.channel))
        if settings.metrics:
            routes += metrics_routes()
        runner, _ = await _start_gateway(caller, args, settings, routes)
        await _until_stopped()
        await runner.cleanup()
        return 0

    return run_loop(serve())


async def _start_metrics(runtime: Runtime, host: str, port: int | None) -> web.AppRunner | None:
    """`crmgate server`'s metrics listener: GET /metrics alone, on a port of its own."""
    routes = runtime.metrics_routes()
    if port is None or not routes:
        return None
    app = web.Application()
    app.router.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    announce(f"metrics listening on http://{bound_host}:{bound_port}")
    return runner


async def _start_gateway(
    caller: Caller,
    args: argparse.Namespace,
    settings: Settings,
    extra_routes: list[web.RouteDef],
) -> tuple[web.AppRunner, str]:
    app = gateway_app(
        caller,
        dev=settings.dev,
        extra_routes=extra_routes,
        trusted_proxies=args.trusted_networks,
        limits=HttpLimits(
            read_timeout=settings.read_timeout, large_bodies=settings.max_large_uploads
        ),
        measured=settings.metrics,
    )
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.http_host, args.http_port)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    announce(f"http listening on {url}")
    return runner, url


def gateway_app(
    caller: Caller,
    *,
    dev: bool,
    extra_routes: Iterable[web.RouteDef] = (),
    trusted_proxies: Iterable[Network] = (),
    limits: HttpLimits = DEFAULT_LIMITS,
    measured: bool = False,
) -> web.Application:
    """The HTTP app every crmgate process serves: the surfaces, their API reference, the
    browser console, and the process's own `extra_routes`; `measured`: with request metrics."""
    surfaces = default_surfaces(dev=dev)
    return build_app(
        caller,
        surfaces,
        FILE_DESCRIPTORS,
        extra_routes=[*extra_routes, *reference.routes(surfaces), *console.routes()],
        trusted_proxies=trusted_proxies,
        limits=limits,
        measured=measured,
    )


@contextlib.asynccontextmanager
async def _watching(runtime: Runtime) -> AsyncIterator[None]:
    """While serving, keep probing the database and storage (for gRPC health and /readyz)
    and sweeping crash debris; on the way out, drain background requests."""
    tasks = [asyncio.create_task(runtime.readiness.watch()), runtime.start_sweeper()]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.drain()


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run a serving command on uvloop: every gRPC call wakes the event loop several
    times (grpc.aio hands each completion over through a socket), and uvloop's loop costs
    about a tenth less CPU per call than asyncio's own (README, Benchmarks)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _until_stopped() -> None:
    """Wait for SIGINT or SIGTERM; the caller then shuts down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signum)


def announce(line: str) -> None:
    """One write per line: log lines from other threads share the stream and must not
    land between a line and its newline (tests and scripts read the addresses off it)."""
    sys.stdout.write(f"crmgate: {line}\n")
    sys.stdout.flush()


def announce_demo(url: str, demo: admin.DemoCredentials) -> None:
    """How to call each surface as the demo tenant (secrets are new at every start)."""
    print(
        f"""
Demo tenant 'demo' (hosts localhost, 127.0.0.1) with contact {admin.DEMO_EMAIL}.
Its credentials are new at every --demo start (only their hashes are stored):
  C2C key:    {demo.c2c_key}
  Close key:  {demo.close_key}
  voyzu user: {demo.voyzu_email} / {demo.voyzu_password}
Try:
  curl -s {url}/api/c2c/health -H 'X-Api-Version: v1' -H 'Authorization: Bearer {demo.c2c_key}'
  curl -s -u '{demo.close_key}:' {url}/api/v1/files/upload/ -H 'Content-Type: application/json' \\
       -d '{{"filename": "a.txt", "content_type": "text/plain"}}'
  curl -s -c jar {url}/api/auth -d '{{"Email": "{demo.voyzu_email}", "Password": "{demo.voyzu_password}"}}'
  curl -s -b jar {url}/api/contacts/search -d '{{}}'
""",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
