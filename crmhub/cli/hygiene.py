"""`crmhub hygiene report|run`: what each list hygiene policy would do now, and what it did."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from crmhub.cli._context import exit_codes
from crmhub.cli._output import console, emit_json, print_table
from crmhub.cli._time import clock
from crmhub.cli.consent import JsonFlag, NowOption, open_store
from crmhub.wiring import declared_fields
from sync.hygiene import last_run, plan, run_hygiene
from sync.segments import evaluate_segments
from sync.store import write_transaction

__all__ = ["hygiene_app"]

hygiene_app = typer.Typer(
    help="List hygiene: invalid numbers, duplicates, dormant contacts, re-confirmation."
)


@hygiene_app.command("report")
def report(ctx: typer.Context, now: NowOption = None, json: JsonFlag = False) -> None:
    """What each policy would change now and what the last run did; changes nothing."""
    at = clock(now)
    with exit_codes(), open_store(ctx) as (settings, engine), engine.connect() as conn:
        # Read-only: the connection is rolled back (plan may create missing system field definitions).
        planned = plan(conn, settings.hygiene, now=at)
        previous = last_run(conn)
    done = {p["policy"]: p["did"] for p in previous["policies"]} if previous else {}
    if json:
        emit_json(
            {
                "enabled": settings.hygiene.enabled,
                "last_run": previous["finished_at"] if previous else None,
                "policies": [
                    {
                        "policy": p.policy,
                        "description": p.description,
                        "would": p.would,
                        "did": done.get(p.policy),
                    }
                    for p in planned
                ],
            }
        )
        return
    when = previous["finished_at"] if previous else "never"
    table = Table("policy", "would change now", f"did (last run: {when})", "what", title="list hygiene")
    for p in planned:
        table.add_row(p.policy, str(p.would), str(done.get(p.policy, "-")), p.description)
    print_table(table)
    if not settings.hygiene.enabled:
        console.print("[dim]hygiene.enabled = false: syncs do not run these policies[/]")


@hygiene_app.command("run")
def run(ctx: typer.Context, now: NowOption = None, json: JsonFlag = False) -> None:
    """Apply every policy now, then re-evaluate segments so dormant contacts leave those excluding them."""
    at = clock(now)
    with exit_codes(), open_store(ctx) as (settings, engine), write_transaction(engine) as conn:
        results = run_hygiene(conn, settings.hygiene, now=at)
        # Straight to the segments: the evaluator of a sync would run the policies a second time.
        evaluate_segments(
            conn,
            settings.segments,
            now=at,
            scoring=settings.scoring,
            declared=declared_fields(settings.field_mapping),
            region=settings.field_mapping.identity.default_region,
        )
    if json:
        emit_json([{"policy": r.policy, "would": r.would, "did": r.did} for r in results])
        return
    for r in results:
        console.print(escape(f"{r.policy}: {r.did}"))
