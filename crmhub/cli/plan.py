"""`crmhub plan`: what the next sync would do to fields and segments, with nothing written."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from connectors import default_http_client
from crmhub.cli._context import CliContext, exit_codes
from crmhub.cli._output import console, emit_json, print_table
from crmhub.cli._time import clock
from crmhub.cli.segments import JsonFlag, NowOption, print_segment_plan, segment_plan
from crmhub.fields_plan import FieldsDryRun, plan_fields

__all__ = ["plan"]


def plan(
    ctx: typer.Context,
    now: NowOption = None,
    pages: Annotated[
        int, typer.Option("--pages", min=1, help="Pages per stream read for the fields plan.")
    ] = 5,
    fields: Annotated[
        bool, typer.Option("--fields/--no-fields", help="Read the sources to plan fields (network).")
    ] = True,
    json: JsonFlag = False,
) -> None:
    """Dry run: the fields the next sync would create or widen, and who would enter or leave each segment."""
    at = clock(now)
    cli = ctx.ensure_object(CliContext)
    with exit_codes():
        settings = cli.settings()
        engine = cli.engine(settings)
        dry: FieldsDryRun | None = None
        if fields:  # with no source to read, still a rule's type change (known from the config)
            with default_http_client(settings.connectors) as http:
                dry = plan_fields(settings, engine, http, now=at, pages=pages)
        rows, at = segment_plan(settings, engine, at)
    if json:
        emit_json({"now": at.isoformat(), "fields": _fields_json(dry), "segments": rows})
        return
    if dry is not None:
        _print_fields(dry)
    print_segment_plan(rows, at)


def _fields_json(dry: FieldsDryRun | None) -> dict[str, Any] | None:
    if dry is None:
        return None
    return {
        "create": [
            {"name": d.name, "type": d.type.value, "source": d.origin.source} for d in dry.plan.create
        ],
        "widen": [{"name": c.name, "from": c.old.value, "to": c.new.value} for c in dry.plan.widen],
        "retype": [
            {"name": c.name, "from": c.old.value, "to": c.new.value, "cleared": dry.cleared.get(c.name, 0)}
            for c in dry.plan.retype
        ],
        "new_options": {name: list(options) for name, options in dry.plan.new_options.items()},
        "records_read": dry.records,
        "pages_read": dry.pages,
        "complete": dry.complete,
    }


def _print_fields(dry: FieldsDryRun) -> None:
    sample = "" if dry.complete else f" (a sample: the first pages of each stream, {dry.records:,} records)"
    table = Table("field", "type", "from", title=f"fields the next sync would create or change{sample}")
    for definition in dry.plan.create:
        table.add_row(definition.name, definition.type.value, definition.origin.source)
    for change in dry.plan.widen:
        table.add_row(change.name, f"{change.old.value} -> {change.new.value}", "widened")
    for change in dry.plan.retype:
        cleared = dry.cleared.get(change.name, 0)
        lost = f"; {cleared:,} stored value(s) not fitting {change.new.value} cleared" if cleared else ""
        table.add_row(change.name, f"{change.old.value} -> {change.new.value}", f"its rule's type{lost}")
    if dry.plan.create or dry.plan.widen or dry.plan.retype:
        print_table(table)
    else:
        console.print(f"fields: the next sync would create none{sample}")
