"""`crmhub db upgrade`, `crmhub db status` and `crmhub db prune`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from crmhub.cli._context import EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import console, emit_json, print_error
from crmhub.cli._time import clock
from crmhub.cli.consent import NowOption
from sync.retention import PruneRefusedError, check_age, parse_age, prune
from sync.store import SchemaStatus, create_store_engine, status, upgrade

db_app = typer.Typer(help="The contact store's schema, and pruning its history.", no_args_is_help=True)

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
        after = upgrade(create_store_engine(settings.database.url))
    if json:
        emit_json(_as_dict(after) | {"applied": after.applied})
    elif after.applied:
        console.print(f"applied {', '.join(after.applied)}; database is at revision {after.current}")
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


def _age(text: str) -> timedelta:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@db_app.command("prune")
def db_prune(
    ctx: typer.Context,
    older_than: Annotated[
        timedelta,
        typer.Option(
            "--older-than",
            help="Delete what finished longer ago than this (90d, 13w); at least 30d and the longest cap.",
            parser=_age,
            metavar="AGE",
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")] = False,
    now: NowOption = None,
    json: JsonFlag = False,
) -> None:
    """Delete finished sync runs and finished deliveries' attempts older than --older-than."""
    at = clock(now)
    with exit_codes():
        cli = ctx.ensure_object(CliContext)
        settings = cli.settings()
        caps = [cap.window for e in settings.webhooks.endpoints.values() if (cap := e.parsed_cap)]
        try:
            check_age(older_than, caps)  # before the store is opened (or a new SQLite file made)
        except PruneRefusedError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        engine = cli.engine(settings)
        report = prune(engine, now=at, older_than=older_than, cap_windows=caps, dry_run=dry_run)
    if json:
        emit_json(
            {
                "cutoff": report.cutoff.isoformat(),
                "dry_run": report.dry_run,
                "sync_runs": report.sync_runs,
                "delivery_attempts": report.delivery_attempts,
                "running_kept": report.running_kept,
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"{verb} {report.sync_runs:,} sync runs and {report.delivery_attempts:,} delivery attempts "
        f"finished before {report.cutoff.isoformat()}"
    )
    if report.running_kept:
        console.print(
            f"kept {report.running_kept:,} runs begun before then and still marked running "
            "(a process killed mid-run): prune never deletes a running run"
        )
