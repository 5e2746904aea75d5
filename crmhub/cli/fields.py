"""`crmhub fields`: the field registry."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from crmhub.cli._context import EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import emit_json, print_error, print_table
from field_mapping.sources import SOURCES
from sync.registry import list_fields
from sync.segments.config import hint


def fields(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only fields of this source.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Each custom field: type, label, origin (rule or automatic, source and path), first seen, fill rate."""
    cli = ctx.ensure_object(CliContext)
    known = (*SOURCES, "crmhub")  # crmhub's own fields: consent, hygiene, lead score
    if source is not None and source not in known:
        suggestion = hint(source, list(known))
        print_error(f"--source: expected one of {', '.join(known)}, found {source!r}{suggestion}")
        raise typer.Exit(EXIT_USAGE)
    with exit_codes():
        settings = cli.settings()
        engine = cli.engine(settings)
        with engine.connect() as conn:
            rows = list_fields(conn, source=source)
    if json:
        emit_json(
            [
                {
                    "name": f.name,
                    "type": f.type,
                    "label": f.label,
                    "origin": f.origin,
                    "source": f.source,
                    "path": f.path,
                    "first_seen_at": f.first_seen_at.isoformat(),
                    "filled": f.filled,
                    "fill_rate": round(f.fill_rate, 4),
                }
                for f in rows
            ]
        )
        return
    table = Table(title=f"{len(rows)} fields" + (f" from {source}" if source else ""))
    for column in ("field", "type", "origin", "path", "first seen", "fill rate"):
        table.add_column(column, justify="right" if column == "fill rate" else "left")
    for f in rows:
        origin = f"{f.origin} ({f.source})" if f.source else f.origin
        table.add_row(
            f.name, f.type, origin, f.path or "", f"{f.first_seen_at:%Y-%m-%d}", f"{f.fill_rate:.0%}"
        )
    print_table(table)
