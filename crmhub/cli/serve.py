"""`crmhub serve`: HTTP endpoints, scheduler and delivery worker in one process."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Annotated

import typer

from crmhub.cli._context import EXIT_FAILED, EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import print_error
from webhooks.exceptions import WebhookConfigError

log = logging.getLogger("crmhub.serve")


class _CannotListenError(Exception):
    """The address cannot be listened on; the message names it, the cause and the fix."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, as uvicorn would bind it, or _CannotListenError saying why not."""
    ipv6 = ":" in host
    where = _shown(host, port)
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as exc:
        sock.close()
        raise _CannotListenError(
            f"cannot listen on {where}: the host {host} cannot be resolved ({exc.strerror}): give an "
            "address of this machine with --host or server.host (127.0.0.1, or 0.0.0.0 for every interface)",
            EXIT_USAGE,
        ) from None
    except OSError as exc:
        sock.close()
        raise _bind_error(where, exc) from None
    return sock


def _bind_error(where: str, exc: OSError) -> _CannotListenError:
    if exc.errno == errno.EADDRINUSE:
        return _CannotListenError(
            f"cannot listen on {where}: the port is in use (another crmhub serve, or another "
            "program): stop it, or pick another port with --port or server.port",
            EXIT_FAILED,
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return _CannotListenError(
            f"cannot listen on {where}: that address is not one of this machine's: give one with "
            "--host or server.host (127.0.0.1, or 0.0.0.0 for every interface)",
            EXIT_USAGE,
        )
    if exc.errno == errno.EACCES:
        return _CannotListenError(
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges): pick "
            "another port with --port or server.port",
            EXIT_FAILED,
        )
    return _CannotListenError(
        f"cannot listen on {where}: {exc.strerror or exc}: check --host and --port "
        "(server.host, server.port)",
        EXIT_FAILED,
    )


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: server.host in the config).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on (default: server.port in the config)."),
    ] = None,
    scheduler: Annotated[
        bool, typer.Option("--scheduler/--no-scheduler", help="Run the sync.schedule jobs in this process.")
    ] = True,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Deliver webhooks from this process.")
    ] = True,
) -> None:
    """Serve provider webhooks, Segment.com ingest and the admin API; run schedules and deliveries."""
    # Imported here: the web stack is only needed by this command, and every other one starts faster.
    import uvicorn

    from crmhub.server.app import create_app
    from crmhub.server.services import Services

    cli = ctx.ensure_object(CliContext)
    with exit_codes():
        settings = cli.settings()
        services = Services(settings=settings, engine=cli.engine(settings))
        try:
            # Refuse to start, rather than answer every webhook with an error, when a secret is unset.
            services.receiver()
        except WebhookConfigError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
    address = (host or settings.server.host, port or settings.server.port)
    try:
        # Bound before the app starts: uvicorn starts the app's scheduler and delivery worker first and
        # binds after, so a server that could not listen still synced and sent webhooks until it failed.
        sock = _listen(*address)
    except _CannotListenError as exc:
        services.close()
        print_error(str(exc))
        raise typer.Exit(exc.code) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per outgoing request would drown what the operator needs to see.
    for chatty in ("httpx", "stripe"):  # the stripe SDK logs every request it makes at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    app = create_app(services, scheduler=scheduler, worker=worker)
    config = uvicorn.Config(
        app,
        host=address[0],
        port=address[1],
        log_level="info",
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_seconds),
        # HubSpot signs the URL it called: behind a TLS-terminating proxy the scheme comes from
        # X-Forwarded-Proto (the proxy passes Host on), believed only from the proxy's addresses.
        proxy_headers=settings.server.proxy_headers,
        forwarded_allow_ips=settings.server.forwarded_allow_ips,
        # Bounds the sockets and tasks a flood of slow or idle clients can hold (each one an fd).
        limit_concurrency=settings.server.limit_concurrency,
        timeout_keep_alive=settings.server.keep_alive_seconds,
    )
    # uvicorn logs where it listens only for sockets it binds itself.
    log.info("crmhub serve: listening on http://%s", _shown(*address))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
