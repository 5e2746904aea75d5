"""`crmhub serve`: HTTP endpoints, scheduler and delivery worker in one process."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from crmhub.cli._context import EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import print_error
from webhooks.exceptions import WebhookConfigError


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: server.host in the config).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: server.port in the config).")
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per outgoing request would drown what the operator needs to see.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(services, scheduler=scheduler, worker=worker)
    config = uvicorn.Config(
        app,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_seconds),
        # HubSpot signs the URL it called: behind a TLS-terminating proxy the scheme comes from
        # X-Forwarded-Proto (the proxy passes Host on), believed only from the proxy's addresses.
        proxy_headers=settings.server.proxy_headers,
        forwarded_allow_ips=settings.server.forwarded_allow_ips,
    )
    uvicorn.Server(config).run()
