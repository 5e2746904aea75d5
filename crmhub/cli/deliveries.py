"""`crmhub deliver`, `crmhub deliveries [list|replay]` and `crmhub webhooks [new-secret|backfill|enable]`."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from crmhub.cli._context import EXIT_FAILED, EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import console, emit_json, print_error, print_note, print_table
from crmhub.cli._time import parse_moment
from crmhub.settings import ConfigError, Problem, Settings
from webhooks import (
    DeliveryWorker,
    RunStats,
    WebhookConfigError,
    WebhookError,
    WebhooksConfig,
    build_senders,
    generate_secret,
    write_transaction,
)
from webhooks.admin import (
    Disabled,
    backfill,
    disabled_endpoints,
    list_deliveries,
    replay,
    troubles,
    undispatched,
)
from webhooks.endpoints import enable

__all__ = ["deliver_command", "deliveries_app", "webhooks_app"]

deliveries_app = typer.Typer(help="Webhook deliveries: list them, replay them.", invoke_without_command=True)
webhooks_app = typer.Typer(help="Webhook endpoints: secrets, backfill, re-enabling.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
EndpointOpt = Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint.")]


class ListStatus(StrEnum):
    """Statuses worth listing."""

    pending = "pending"
    leased = "leased"
    failed = "failed"
    dead = "dead"
    succeeded = "succeeded"
    suppressed = "suppressed"
    cancelled = "cancelled"


class ReplayStatus(StrEnum):
    """Statuses a bulk replay takes."""

    dead = "dead"
    failed = "failed"
    cancelled = "cancelled"


def _now() -> datetime:
    return datetime.now(UTC)


def _webhooks(settings: Settings) -> WebhooksConfig:
    # The root settings carry our model as `webhooks`; an older root without it means no endpoints.
    config = getattr(settings, "webhooks", None)
    return config if isinstance(config, WebhooksConfig) else WebhooksConfig()


@contextmanager
def _webhook_errors() -> Iterator[None]:
    """Turn the webhooks package's errors into exit codes: configuration 2, anything else 1."""
    try:
        yield
    except WebhookConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except WebhookError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_FAILED) from None


def _open(ctx: typer.Context) -> tuple[WebhooksConfig, Engine, Mapping[str, str]]:
    """The webhooks configuration, the store, and `[consent] channels` (what a suppression blocks)."""
    cli = ctx.ensure_object(CliContext)
    settings = cli.settings()
    return _webhooks(settings), cli.engine(settings), settings.consent.channels


def _check_endpoint(config: WebhooksConfig, endpoint: str | None) -> None:
    if endpoint is not None and endpoint not in config.endpoints:
        known = ", ".join(config.endpoints) or "none"
        raise ConfigError(
            [Problem(f"webhooks.endpoints.{endpoint}", f"expected one of: {known}; found no such endpoint")]
        )


StatusOpt = Annotated[ListStatus | None, typer.Option("--status", help="Only deliveries in this status.")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")]


@deliveries_app.callback(invoke_without_command=True)
def deliveries_default(
    ctx: typer.Context,
    status: StatusOpt = None,
    endpoint: EndpointOpt = None,
    limit: LimitOpt = 50,
    json: JsonFlag = False,
) -> None:
    """List deliveries (the default when no subcommand is given)."""
    if ctx.invoked_subcommand is None:
        deliveries_list(ctx, status, endpoint, limit, json)


@deliveries_app.command("list")
def deliveries_list(
    ctx: typer.Context,
    status: StatusOpt = None,
    endpoint: EndpointOpt = None,
    limit: LimitOpt = 50,
    json: JsonFlag = False,
) -> None:
    """List deliveries, newest first."""
    with exit_codes(), _webhook_errors():
        config, engine, _ = _open(ctx)
        _check_endpoint(config, endpoint)
        with engine.connect() as conn:
            found = list_deliveries(
                conn, status=status.value if status else None, endpoint=endpoint, limit=limit
            )
            off = {d.endpoint for d in disabled_endpoints(conn, {row["endpoint"] for row in found})}
            waiting = undispatched(conn)
    if waiting:
        # Deliveries are made when a worker fans the outbox out: right after a sync there are none yet.
        print_note(
            f"{waiting:,} transition(s) wait in the outbox, not fanned out to deliveries yet: "
            "`crmhub deliver` (or `crmhub serve`'s worker) makes and sends them"
        )
    if len(found) == limit:
        # On stderr: the list (or its JSON) on stdout stays what it was, and a count is not mistaken.
        print_note(f"showing the newest {limit:,}; there may be more: --limit N shows up to N")
    if json:
        emit_json(found)
        return
    if not found:
        console.print("no deliveries")
        return
    table = Table(
        "id",
        "endpoint",
        "event",
        "segment",
        "contact",
        "status",
        "attempts",
        "next attempt",
        "last",
        "reason",
    )
    for row in found:
        table.add_row(*_cells(row, row["endpoint"] in off))
    print_table(table)


def _cells(row: dict[str, Any], endpoint_disabled: bool) -> list[str]:
    nxt = row["next_attempt_at"].isoformat(timespec="seconds") if row["next_attempt_at"] else ""
    if endpoint_disabled:
        # Its time has passed long ago, or passes with nothing sent: only re-enabling sends it.
        nxt = f"waits for `crmhub webhooks enable {row['endpoint']}`"
    return [
        str(row["id"]),
        row["endpoint"],
        f"segment.{row['kind']}",
        row["segment"],
        str(row["contact_id"]),
        row["status"],
        str(row["attempts"]),
        nxt if row["status"] in ("pending", "failed") else "",
        str(row["last_status_code"] or ""),
        row["reason"] or "",
    ]


@deliveries_app.command("replay")
def deliveries_replay(
    ctx: typer.Context,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", help="Deliveries created at or after this time (UTC if no zone).", parser=parse_moment
        ),
    ] = None,
    delivery_id: Annotated[
        int | None, typer.Option("--id", help="This one delivery, whatever its status.")
    ] = None,
    status: Annotated[
        ReplayStatus | None,
        typer.Option("--status", help="Only this status (default: dead and failed; cancelled only by name)."),
    ] = None,
    endpoint: EndpointOpt = None,
    json: JsonFlag = False,
) -> None:
    """Send deliveries again with a fresh schedule, under their original webhook-id."""
    if delivery_id is None and since is None and status is None:
        print_error("say what to replay: --id ID, --since TIME or --status dead")
        raise typer.Exit(EXIT_USAGE)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with exit_codes(), _webhook_errors():
        config, engine, channels = _open(ctx)
        _check_endpoint(config, endpoint)
        # Replay reads, then writes: on SQLite only a transaction holding the write lock from its start
        # waits (busy_timeout) for a sync or `crmhub deliver` instead of failing at once when one commits.
        with write_transaction(engine) as conn:
            done = replay(
                conn,
                _now(),
                endpoints=config.endpoints,
                channels=channels,
                delivery_id=delivery_id,
                since=since,
                status=status.value if status else None,
                endpoint=endpoint,
            )
    if delivery_id is None or done.replayed:
        if json:
            emit_json({"replayed": done.replayed, "withheld": done.withheld})
        else:
            console.print(f"{done.replayed} deliveries will be sent again by `crmhub deliver`")
            for reason, count in sorted(done.withheld.items()):
                console.print(escape(f"{count} segment.entered held back: {reason}"))
    else:
        why = next(iter(done.withheld), None)
        print_error(
            f"delivery {delivery_id}: held back: {why}"
            if why
            else f"delivery {delivery_id}: not found, or being sent right now"
        )
        raise typer.Exit(EXIT_FAILED)


@webhooks_app.command("new-secret")
def webhooks_new_secret(
    size: Annotated[int, typer.Option("--bytes", min=24, max=64, help="Random bytes in the secret.")] = 32,
    json: JsonFlag = False,
) -> None:
    """Print a new whsec_ signing secret; put it in the environment variable an endpoint names."""
    secret = generate_secret(size)
    if json:
        emit_json({"secret": secret})
    else:
        typer.echo(secret)


@webhooks_app.command("backfill")
def webhooks_backfill(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option("--endpoint", help="The endpoint to fill.")],
    segment: Annotated[str, typer.Option("--segment", help="The segment whose current members are sent.")],
    json: JsonFlag = False,
) -> None:
    """Send a segment's current members to an endpoint as segment.entered (consent and caps apply)."""
    with exit_codes(), _webhook_errors():
        config, engine, channels = _open(ctx)
        _check_endpoint(config, endpoint)
        with write_transaction(engine) as conn:
            result = backfill(conn, config, endpoint, segment, _now(), channels=channels)
    summary = {
        "members": result.members,
        "queued": result.created,
        "suppressed": result.suppressed,
        "already_queued": result.already,
        "without_entry_transition": result.without_transition,
    }
    if json:
        emit_json(summary)
    else:
        # `already_queued` counts entries whose delivery exists, whatever became of it.
        labels = {"already_queued": "already sent or queued"}
        console.print(", ".join(f"{labels.get(k, k.replace('_', ' '))}: {v}" for k, v in summary.items()))


@webhooks_app.command("enable")
def webhooks_enable(
    ctx: typer.Context, endpoint: Annotated[str, typer.Argument(help="The endpoint.")]
) -> None:
    """Deliver to an endpoint again after it answered 410 Gone (its waiting deliveries go out)."""
    with exit_codes(), _webhook_errors():
        config, engine, _ = _open(ctx)
        _check_endpoint(config, endpoint)
        with write_transaction(engine) as conn:
            was_disabled = enable(conn, endpoint, _now())
    console.print(f"{endpoint}: {'enabled again' if was_disabled else 'was not disabled; circuit reset'}")


def deliver_command(
    ctx: typer.Context,
    forever: Annotated[
        bool, typer.Option("--forever", help="Keep polling for new deliveries until stopped.")
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Send due webhook deliveries until none is left (or forever)."""
    with exit_codes(), _webhook_errors():
        config, engine, channels = _open(ctx)
        if not config.endpoints:
            print_error("no webhook endpoints configured: add [webhooks.endpoints.<name>] to the config")
            raise typer.Exit(EXIT_USAGE)
        worker = DeliveryWorker(engine, config, build_senders(config, os.environ), channels=channels)
        stats = asyncio.run(_deliver(worker, forever))
    summary: dict[str, Any] = {"fanned_out": stats.fanned_out, "attempts": stats.attempts, **stats.outcomes}
    with engine.connect() as conn:
        waiting = troubles(conn) if set(stats.outcomes) - {"succeeded"} else []
        # From the endpoints' states, not this run's answers: a later run sends nothing and says why.
        disabled = disabled_endpoints(conn, config.endpoints)
    off = {d.endpoint for d in disabled}
    # A disabled endpoint's failed deliveries are not retried on any schedule: they wait for `enable`.
    waiting = [t for t in waiting if not (t[0] in off and t[1] == "failed")]
    if json:
        emit_json(
            summary
            | {"held_back": dict(stats.held_back)}
            | {"troubles": [{"endpoint": e, "status": s, "count": n, "reason": r} for e, s, n, r in waiting]}
            | {"disabled": [_disabled_json(d) for d in disabled]}
        )
        return
    console.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items()))
    if stats.held_back:
        # Fanned out but never to be sent: without this line the counts above do not add up.
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(stats.held_back.items()))
        console.print(
            f"held back: {sum(stats.held_back.values()):,} ({reasons}; "
            "`crmhub deliveries --status suppressed` lists them)"
        )
    for endpoint, status, count, reason in waiting:
        what = (
            "will be retried on the schedule"
            if status == "failed"
            else "gave up (dead; replay them when fixed)"
        )
        print_note(
            f"{endpoint}: {count:,} deliveries {what}; latest: {reason or 'no reason recorded'} "
            f"(`crmhub deliveries --endpoint {endpoint} --status {status}`)"
        )
    for off_endpoint in disabled:
        print_note(_disabled_note(off_endpoint))


def _disabled_note(endpoint: Disabled) -> str:
    """What a disabled endpoint waits for: since when, why, how many deliveries, and the command."""
    when = endpoint.disabled_at.isoformat(timespec="seconds")
    why = f" ({endpoint.reason})" if endpoint.reason else ""
    return (
        f"{endpoint.endpoint}: disabled at {when}{why}; {endpoint.waiting:,} deliveries wait: "
        f"run `crmhub webhooks enable {endpoint.endpoint}`"
    )


def _disabled_json(endpoint: Disabled) -> dict[str, Any]:
    return {
        "endpoint": endpoint.endpoint,
        "disabled_at": endpoint.disabled_at.isoformat(),
        "reason": endpoint.reason,
        "waiting": endpoint.waiting,
    }


async def _deliver(worker: DeliveryWorker, forever: bool) -> RunStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        return await worker.run(_now, forever=forever, stop=stop)
    finally:
        await worker.aclose()
