"""The `crmhub` command: builds objects, calls one function, turns known errors into exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmhub.cli._context import CliContext
from crmhub.cli.config_commands import check, init
from crmhub.cli.consent import consent_app
from crmhub.cli.contact import contact_app
from crmhub.cli.db import db_app
from crmhub.cli.deliveries import deliver_command, deliveries_app, webhooks_app
from crmhub.cli.demo import demo
from crmhub.cli.fields import fields
from crmhub.cli.hygiene import hygiene_app
from crmhub.cli.plan import plan
from crmhub.cli.sandbox import sandbox_app
from crmhub.cli.segments import explain_command, history_command, segments_app
from crmhub.cli.serve import serve
from crmhub.cli.sync_commands import sources, sync
from crmhub.runtime import tune_garbage_collector

app = typer.Typer(
    name="crmhub",
    help="crmhub: Stripe, HubSpot, Typeform and Segment.com into one contact store, live segments, webhooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: $CRMHUB_CONFIG, else ./crmhub.toml)."),
    ] = None,
) -> None:
    """Read the global options."""
    ctx.obj = CliContext(config=config)


app.command()(init)
app.command()(check)
app.command()(sync)
app.command()(serve)
app.command()(sources)
app.command()(fields)
app.add_typer(segments_app, name="segments")
app.command("explain")(explain_command)
app.command("plan")(plan)
app.command("history")(history_command)
app.command()(demo)
app.add_typer(db_app, name="db")
app.command("deliver")(deliver_command)
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(contact_app, name="contact")
app.add_typer(consent_app, name="consent")
app.add_typer(hygiene_app, name="hygiene")


def main() -> None:
    """Console-script entry point."""
    tune_garbage_collector()
    app()
