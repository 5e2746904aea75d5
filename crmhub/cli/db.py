"""`crmhub db upgrade` and `crmhub db status`."""

from __future__ import annotations

from typing import Annotated

import typer

from crmhub.cli._context import CliContext, exit_codes
from crmhub.cli._output import console, emit_json
from sync.store import SchemaStatus, create_store_engine, status, upgrade

db_app = typer.Typer(help="The contact store's schema.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _as_dict(current: SchemaStatus) -> dict[str, object]:
    return {
        "current": current.current,
        "head": current.head,
        "pending": current.pending,
        "up_to_date": current.up_to_date,
    }


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Apply every pending migration (running it again changes nothing)."""
    with exit_codes():
        settings = ctx.ensure_object(CliContext).settings()
        engine = create_store_engine(settings.database.url)
        before = status(engine)
        after = upgrade(engine)
    if json:
        emit_json(_as_dict(after) | {"applied": before.pending})
    elif before.pending:
        console.print(f"applied {', '.join(before.pending)}; database is at revision {after.current}")
    else:
        console.print(f"nothing to do; database is at revision {after.current}")


@db_app.command("status")
def db_status(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Show the schema revision of the database and what is pending."""
    with exit_codes():
        settings = ctx.ensure_object(CliContext).settings()
        current = status(create_store_engine(settings.database.url))
        if not current.known:
            raise current.unknown_error()
    if json:
        emit_json(_as_dict(current))
        return
    console.print(f"revision: {current.current or 'none (empty database)'}")
    console.print(f"head:     {current.head}")
    if current.pending:
        console.print(f"pending:  {', '.join(current.pending)}: run `crmhub db upgrade`")
    else:
        console.print("[green]up to date[/]")
