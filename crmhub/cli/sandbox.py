"""`crmhub sandbox serve | config | tick | send-events`: run it, configure crmhub, move time, push."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from segment.analytics import Client

from crmhub.sandbox import (
    LIVED_DAYS,
    FaultSpecError,
    Sandbox,
    SandboxServer,
    parse_fault,
    sandbox_config,
    start_before,
)
from crmhub.sandbox.credentials import SEGMENT_WRITE_KEY
from crmhub.sandbox.faults import Fault
from crmhub.sandbox.webhooks_out import Dispatcher

sandbox_app = typer.Typer(
    help="Local look-alikes of Stripe, HubSpot, Typeform and Segment.com.", no_args_is_help=True
)
_out = Console()
_err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _control(url: str, method: str, path: str, body: Any = None) -> Any:
    target = url.rstrip("/") + path
    if not target.startswith(("http://", "https://")):
        raise _fail(f"--url must be an http(s) URL, got {url!r}", EXIT_USAGE)
    try:
        answer = httpx.request(method, target, json=body, timeout=120)
    except httpx.HTTPError as exc:
        raise _fail(
            f"no sandbox answers at {url} ({exc}); start one with `crmhub sandbox serve`", EXIT_FAILED
        ) from None
    if answer.status_code >= 400:
        raise _fail(
            f"the sandbox at {url} refused {method} {path}: {answer.status_code} {answer.text}", EXIT_FAILED
        )
    return answer.json()


@sandbox_app.command()
def serve(
    people: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many people to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the generator; same people+seed, same data.")] = 0,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: a free one).")] = 8787,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    fault: Annotated[
        list[str] | None, typer.Option(help="Fault API:KIND[:WHEN], e.g. stripe:429:0.2 (repeatable).")
    ] = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option(help="Provider webhook target PROVIDER=URL, e.g. stripe=http://... (repeatable)."),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help=(
                "The sandbox clock's first day, UTC (default: a week ago, then four days lived through, "
                "so its data is recent)."
            ),
        ),
    ] = None,
) -> None:
    """Serve every look-alike on one port until interrupted."""
    try:
        faults: list[Fault] = [parse_fault(spec) for spec in fault or []]
    except FaultSpecError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    targets: dict[str, str | None] = {}
    for item in webhook or []:
        provider, sep, target = item.partition("=")
        if not sep or not target:
            raise _fail(
                f"--webhook {item!r} is not PROVIDER=URL (e.g. stripe=http://127.0.0.1:9000/)", EXIT_USAGE
            )
        targets[provider.strip().lower()] = target.strip()
    try:
        # Checked before generating, which takes seconds for large sandboxes.
        Dispatcher().configure(targets)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    # The clock is read here, at the edge: crmhub syncs on the real clock, so the sandbox's is recent.
    first_day = start_before(time.time()) if start is None else int(start.replace(tzinfo=UTC).timestamp())
    with _out.status(f"generating {people} people (seed {seed})..."):
        sandbox = Sandbox(people=people, seed=seed, start=first_day, faults=faults)
        if start is None:
            sandbox.world.tick(LIVED_DAYS)  # recent activity for windows measured from today
    sandbox.webhooks.configure(targets)
    server = SandboxServer(sandbox, host=host, port=port)
    try:
        server.start()
    except (OSError, TimeoutError) as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc}", EXIT_FAILED) from None
    counts = sandbox.world.counts()
    _out.print(f"[bold green]crmhub sandbox[/] listening on [bold]{server.url}[/]", highlight=False)
    _out.print(
        f"  stripe {counts['stripe']['customers']} customers, "
        f"hubspot {counts['hubspot']['contacts']} contacts, "
        f"typeform {counts['typeform']['responses']} responses, {len(faults)} fault(s), "
        f"{len(targets)} webhook target(s)",
        highlight=False,
    )
    _out.print(f"  config:  crmhub sandbox config --url {server.url} > crmhub.toml", highlight=False)
    _out.print(f"  tick:    crmhub sandbox tick --url {server.url} --days 1", highlight=False)
    _out.print("  Ctrl-C stops it.")
    server.wait()


@sandbox_app.command()
def config(
    url: Annotated[str, typer.Option(help="Base URL of the running sandbox.")],
    database_url: Annotated[
        str, typer.Option(help="Database URL to put in the config.")
    ] = "sqlite:///crmhub.db",
) -> None:
    """Print a complete crmhub config (TOML) for the sandbox at URL, credentials as `# export` lines."""
    _control(url, "GET", "/_sandbox/state")
    sys.stdout.write(sandbox_config(url, database_url))


@sandbox_app.command()
def tick(
    url: Annotated[str, typer.Option(help="Base URL of the running sandbox.")],
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days to advance.")] = 1,
) -> None:
    """Advance the sandbox's clock and mutate its data (provider webhooks go to configured targets)."""
    report = _control(url, "POST", "/_sandbox/tick", {"days": days})
    table = Table(title=f"sandbox advanced {report['days']} day(s)")
    table.add_column("change")
    table.add_column("count", justify="right")
    for name, count in report["changes"].items():
        table.add_row(name, str(count))
    table.add_row("provider webhooks sent", str(report["webhooks_sent"]))
    _out.print(table)


@sandbox_app.command("send-events")
def send_events(
    url: Annotated[str, typer.Option(help="Base URL of the running sandbox.")],
    to: Annotated[
        str, typer.Option(help="Base URL of `crmhub serve`, whose Tracking API (/v1/batch) takes them.")
    ] = "http://127.0.0.1:8484",
    write_key: Annotated[
        str, typer.Option(envvar="SEGMENT_WRITE_KEY", help="The write key crmhub's config names.")
    ] = SEGMENT_WRITE_KEY,
) -> None:
    """Send the sandbox's Segment.com product events to crmhub serve, as segment-analytics-python does."""
    messages = _control(url, "GET", "/_sandbox/segmentio/product-events")["events"]
    refused: list[str] = []

    def failed(error: Exception, batch: list[dict[str, Any]]) -> None:
        refused.append(f"{len(batch)} message(s): {error}")

    # The real library, as an app would use it; its retries are capped so a crmhub that is down ends soon.
    client = Client(write_key, host=to.rstrip("/"), on_error=failed, upload_size=100, max_retries=2)
    for message in messages:
        _send(client, message)
    client.flush()
    client.join()
    kinds = {kind: sum(m["type"] == kind for m in messages) for kind in ("identify", "track")}
    if refused:
        raise _fail(
            f"{to} refused {len(refused)} batch(es) of the {len(messages)} events (is `crmhub serve` "
            f"running there, with connectors.segmentio enabled?): {refused[0]}",
            EXIT_FAILED,
        )
    _out.print(
        f"sent {kinds['identify']} identify and {kinds['track']} track calls to {to}/v1/batch; "
        "`crmhub segments` shows who entered",
        highlight=False,
    )


def _send(client: Client, message: dict[str, Any]) -> None:
    """One sandbox message through the library call of its type."""
    when = datetime.fromisoformat(message["timestamp"])
    common = {"timestamp": when, "message_id": message["messageId"]}
    if message["type"] == "identify":
        client.identify(message["userId"], message.get("traits") or {}, **common)
    else:
        client.track(message["userId"], message["event"], message.get("properties") or {}, **common)
