"""`crmhub demo`: the main job end to end on the built-in sandbox, narrated."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from crmhub.cli._context import EXIT_FAILED, exit_codes
from crmhub.cli._output import console, print_error
from crmhub.cli.segments import render_explanation
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
    """The main job on the built-in sandbox: sync, fields, segments, verified webhooks; a tick; again."""
    where = workdir or Path(tempfile.mkdtemp(prefix="crmhub-demo-"))
    session = Demo(where, people=people, seed=seed)
    try:
        with exit_codes():
            session.start()
            try:
                _narrate(session, days)
            finally:
                session.stop()
    finally:
        if workdir is None:
            # A store of its own in a temp dir: tens of MB that nobody would find again.
            shutil.rmtree(where, ignore_errors=True)
    if workdir is None:
        console.print(f"(the demo's config and store in {where} are removed; `--dir DIR` keeps them)")


def _narrate(session: Demo, days: int) -> None:
    console.print(
        Panel.fit(
            f"sandbox: Stripe, HubSpot, Typeform and Segment.com look-alikes at {session.server.url}\n"
            f"config:  {session.config_path}\nstore:   {session.settings.database.url}",
            title="crmhub demo",
        )
    )
    console.rule(f"1. first sync (sandbox clock {session.sandbox_now():%Y-%m-%d %H:%M} UTC)")
    mark = session.last_transition()
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
        f"{_merges(store.merges)}; {store.quarantined:,} records held in quarantine with a reason)"
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
    console.rule("3. segments computed")
    _segments(session, mark)
    console.rule("4. webhooks delivered to the sandbox's receiver")
    _webhooks(session)
    console.rule(f"5. the sandbox's world moves on {days} day(s)")
    changes = session.tick(days)["changes"]
    for what, count in changes.items():
        console.print(f"  {what:<44} {count:>6,}")
    console.rule(f"6. incremental sync (sandbox clock {session.sandbox_now():%Y-%m-%d %H:%M} UTC)")
    mark = session.last_transition()
    second = _sync(session)
    again = session.fields()
    console.print(
        f"{sum(s.records for s in second.streams):,} changed records pulled with "
        f"{sum(s.requests for s in second.streams):,} requests; {again.total - fields.total} new fields"
    )
    _report_push(session.push_hubspot())
    _segments(session, mark)
    _webhooks(session)
    _explain(session)
    if first.failed or second.failed:
        raise typer.Exit(EXIT_FAILED)


def _segments(session: Demo, mark: int) -> None:
    """Each segment's members, and who entered and left since the transition `mark`."""
    moved = session.moved_since(mark)
    table = Table(show_edge=False)
    for column in ("segment", "members", "entered", "left"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for key, members in sorted(session.segment_sizes().items()):
        entered, left = moved.get(key, (0, 0))
        table.add_row(key, f"{members:,}", f"{entered:,}", f"{left:,}")
    console.print(table)


def _webhooks(session: Demo) -> None:
    stats = session.deliver()
    received = session.received()
    sent = dict(stats.outcomes)
    types: dict[str, int] = {}
    for delivery in received["accepted"]:
        kind = delivery["payload"]["type"]
        types[kind] = types.get(kind, 0) + 1
    held = (
        f", {sum(stats.held_back.values()):,} held back ({_counts(dict(stats.held_back))})"
        if stats.held_back
        else ""
    )
    console.print(
        f"{stats.fanned_out:,} deliveries fanned out{held}; {stats.attempts:,} attempts ({_counts(sent)}); "
        f"the receiver verified {len(received['accepted']):,} signatures in all ({_counts(types)}), "
        f"rejected {received['rejected']:,}, saw {received['duplicates']:,} duplicates"
    )


def _explain(session: Demo) -> None:
    found = session.explain_a_member()
    if found is None:
        return
    contact_id, key, explanation = found
    console.rule(
        f"7. why is contact {contact_id} in {key}?  (crmhub explain --contact {contact_id} --segment {key})"
    )
    console.print(render_explanation(explanation))
    console.rule("8. real time: a signed Stripe webhook through `crmhub serve`")
    seen = session.realtime()
    console.print(
        f"`crmhub serve` at {seen.url} verified a signed invoice.paid on POST /hooks/stripe, stored it, "
        f"evaluated the segments and delivered [bold]{seen.type}[/] ({seen.segment}) to the receiver "
        f"{seen.seconds * 1000:.0f} ms after the webhook was sent"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {what}" for what, n in sorted(counts.items())) or "none"


def _report_push(pushed: PushReport | None) -> None:
    if pushed is None:
        return
    group = "group created, " if pushed.group_created else ""
    console.print(
        f"HubSpot: {group}{len(pushed.properties_created)} contact properties created, "
        + (f"{len(pushed.properties_retyped)} retyped, " if pushed.properties_retyped else "")
        + f"{pushed.contacts_updated:,} contacts' values written back in {pushed.calls} calls"
    )


def _sync(session: Demo) -> RunReport:
    with StreamProgress() as progress:
        report = session.sync(on_progress=progress.update)
    for stream in report.failed:
        print_error(f"{stream.source}.{stream.stream}: {stream.error}")
    return report


__all__ = ["demo"]


def _merges(count: int) -> str:
    """The merge count, which depends on the order the sources' pages met (they pull side by side)."""
    merges = "1 merge" if count == 1 else f"{count:,} merges"
    return f"{merges} of contacts first seen apart, as the side-by-side pulls' pages met"
