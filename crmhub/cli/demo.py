"""`crmhub demo`: the main job end to end on the built-in sandbox, narrated."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from crmhub.cli._context import EXIT_FAILED, exit_codes
from crmhub.cli._output import console, print_error
from crmhub.cli.sync_commands import StreamProgress
from crmhub.demo import Demo
from sync.engine import RunReport
from sync.hubspot_push import PushReport


def demo(
    people: Annotated[int, typer.Option(help="People the sandbox generates.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox's generator.")] = 7,
    days: Annotated[int, typer.Option(help="Days the sandbox advances between the two syncs.")] = 3,
    workdir: Annotated[
        Path | None, typer.Option("--dir", help="Keep the config and the store here (default: a temp dir).")
    ] = None,
) -> None:
    """Start the sandbox, sync every source, show fields and contacts, tick, and sync again."""
    where = workdir or Path(tempfile.mkdtemp(prefix="crmhub-demo-"))
    session = Demo(where, people=people, seed=seed)
    with exit_codes():
        session.start()
        try:
            _narrate(session, days)
        finally:
            session.stop()


def _narrate(session: Demo, days: int) -> None:
    console.print(
        Panel.fit(
            f"sandbox: Stripe, HubSpot, Typeform and Segment.com look-alikes at {session.server.url}\n"
            f"config:  {session.config_path}\nstore:   {session.settings.database.url}",
            title="crmhub demo",
        )
    )
    console.rule(f"1. first sync (sandbox clock {session.sandbox_now():%Y-%m-%d %H:%M} UTC)")
    first = _sync(session)
    pushed = session.push_segmentio()
    console.print(
        f"segmentio: {pushed.records:,} identify calls and {pushed.events:,} track/page events taken in "
        "as Segment.com pushes them"
    )
    store = session.store()
    console.print(
        f"{store.records:,} records from {len({s.source for s in first.streams}) + 1} sources became "
        f"[bold]{store.contacts:,} contacts[/] ({store.identities:,} identities; "
        f"{store.merges:,} merges; {store.quarantined:,} records held in quarantine with a reason)"
    )
    fields = session.fields()
    console.rule("2. fields created automatically")
    console.print(
        f"{fields.total} fields: "
        + ", ".join(f"{source} {count}" for source, count in fields.by_source.items())
    )
    for name, ftype in fields.examples:
        console.print(f"  {name:<44} {ftype}")
    _report_push(session.push_hubspot())
    console.rule(f"3. the sandbox's world moves on {days} day(s)")
    changes = session.tick(days)["changes"]
    for what, count in changes.items():
        console.print(f"  {what:<44} {count:>6,}")
    console.rule(f"4. incremental sync (sandbox clock {session.sandbox_now():%Y-%m-%d %H:%M} UTC)")
    second = _sync(session)
    again = session.fields()
    console.print(
        f"{sum(s.records for s in second.streams):,} changed records pulled with "
        f"{sum(s.requests for s in second.streams):,} requests; {again.total - fields.total} new fields"
    )
    _report_push(session.push_hubspot())
    if first.failed or second.failed:
        raise typer.Exit(EXIT_FAILED)


def _report_push(pushed: PushReport | None) -> None:
    if pushed is None:
        return
    group = "group created, " if pushed.group_created else ""
    console.print(
        f"HubSpot: {group}{len(pushed.properties_created)} contact properties created, "
        f"{pushed.contacts_updated:,} contacts' values written back in {pushed.calls} calls"
    )


def _sync(session: Demo) -> RunReport:
    with StreamProgress() as progress:
        report = session.sync(on_progress=progress.update)
    for stream in report.failed:
        print_error(f"{stream.source}.{stream.stream}: {stream.error}")
    return report


__all__ = ["demo"]
