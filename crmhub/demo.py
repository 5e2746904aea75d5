"""The demo: crmhub's main job end to end against the built-in sandbox, reported as it happens.

Everything shown is read back from the store or the sandbox after the real code ran: the sandbox
serves generated people over real HTTP, the connectors pull them, mapping and identity turn them
into contacts and fields, a tick changes the sandbox's world, and a second sync pulls only that.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from connectors import default_http_client
from connectors.segmentio import parse_messages
from crmhub.sandbox import Sandbox, SandboxServer, credentials, sandbox_config
from crmhub.sandbox.harness import ServeProcess
from crmhub.sandbox.webhooks_out import invoice_paid, stripe_headers
from crmhub.settings import Settings, load_settings
from crmhub.wiring import build_sources, build_sync_engine, hubspot_push, pull_source_names
from sync.engine import BatchResult, ProgressCallback, RunReport
from sync.hubspot_push import PushReport
from sync.segments.explain import Explainer, Explanation, load_contact
from sync.segments.queries import last_transition_id, moved
from sync.store import create_store_engine, upgrade
from sync.store.tables import (
    contact_identities,
    contacts,
    field_definitions,
    memberships,
    merge_log,
    quarantine,
    records,
    segments,
)
from webhooks import DeliveryWorker, RunStats, build_senders


@dataclass
class FieldSummary:
    """Fields created, per source, with a few examples."""

    total: int
    by_source: dict[str, int]
    examples: list[tuple[str, str]]


@dataclass
class StoreSummary:
    """What the store holds after a run."""

    records: int
    contacts: int
    identities: int
    merges: int
    quarantined: int


@dataclass(frozen=True)
class RealTime:
    """What the real-time step saw: the server, the webhook that came out, and how long it took."""

    url: str
    type: str
    segment: str
    seconds: float


class Demo:
    """One demo: a sandbox, a config and a store in `workdir`, and the steps to run against them."""

    def __init__(self, workdir: Path, *, people: int, seed: int) -> None:
        self.workdir = workdir
        self.sandbox = Sandbox(people=people, seed=seed)
        self.server = SandboxServer(self.sandbox)
        self.config_path = workdir / "crmhub.toml"
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    def start(self) -> None:
        """Serve the sandbox on a free loopback port and write a config pointing at it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for leftover in self.workdir.glob("crmhub.db*"):
            leftover.unlink()
        self.server.start()
        database = f"sqlite:///{self.workdir / 'crmhub.db'}"
        self.config_path.write_text(sandbox_config(self.server.url, database_url=database), encoding="utf-8")
        os.environ.update(credentials.ENVIRONMENT)
        self._settings = load_settings(self.config_path)
        self._engine = create_store_engine(self._settings.database.url)
        upgrade(self._engine)

    def stop(self) -> None:
        """Stop the sandbox and close the store."""
        if self._engine is not None:
            self._engine.dispose()
        self.server.stop()

    @property
    def settings(self) -> Settings:
        """The settings the demo wrote and loaded."""
        assert self._settings is not None, "start() first"
        return self._settings

    @property
    def engine(self) -> Engine:
        """The demo's store."""
        assert self._engine is not None, "start() first"
        return self._engine

    def sandbox_now(self) -> datetime:
        """The sandbox's clock: the demo's runs use it as `now`, so time windows match the data."""
        return datetime.fromtimestamp(self.sandbox.world.now, UTC)

    def sync(self, on_progress: ProgressCallback | None = None) -> RunReport:
        """One sync of every enabled source, exactly as `crmhub sync` runs it."""
        settings = self.settings
        with default_http_client(settings.connectors) as http:
            sources = build_sources(settings, pull_source_names(settings, None), http)
            engine = build_sync_engine(settings, self.engine, sources)
            return engine.run(sources, now=self.sandbox_now(), on_progress=on_progress)

    def push_hubspot(self) -> PushReport | None:
        """Create the fields in HubSpot and write changed values back, as `crmhub sync` does."""
        with default_http_client(self.settings.connectors) as http:
            return hubspot_push(self.settings, self.engine, http, now=self.sandbox_now())

    def push_segmentio(self) -> BatchResult:
        """The sandbox's Segment.com calls (identify, track, page), taken in as pushed messages."""
        batch = parse_messages(self.sandbox.world.product_events, received_at=self.sandbox_now())
        return build_sync_engine(self.settings, self.engine).ingest(batch, now=self.sandbox_now())

    def deliver(self) -> RunStats:
        """Fan the outbox out and deliver until nothing is due, as `crmhub deliver` does.

        Deliveries are stamped and signed with the real clock: the receiver checks their timestamps
        against it, as any consumer would.
        """
        config = self.settings.webhooks

        async def run() -> RunStats:
            worker = DeliveryWorker(
                self.engine,
                config,
                build_senders(config, os.environ),
                channels=self.settings.consent.channels,
            )
            try:
                return await worker.run(lambda: datetime.now(UTC))
            finally:
                await worker.aclose()

        return asyncio.run(run())

    def realtime(self, timeout: float = 20.0) -> RealTime:
        """`crmhub serve` on this store; a signed Stripe payment in, until the receiver has its entry.

        The server runs on the real clock, so the payment is dated now and its customer is new: the
        segment it enters is `paid_last_7_days`, whatever the sandbox's clock says.
        """
        customer = f"cus_demo_{int(time.time())}"
        email = f"{customer}@example.com"
        body = invoice_paid(customer, email, int(time.time()))
        with ServeProcess(self.config_path, credentials.ENVIRONMENT, "--no-scheduler") as serve:
            headers = stripe_headers(body, int(time.time()))
            sent = time.time()
            answer = httpx.post(f"{serve.url}/hooks/stripe", content=body, headers=headers, timeout=10)
            answer.raise_for_status()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for row in self.sandbox.receiver.state("demo")["accepted"]:
                    payload = row["payload"]
                    if row["received_at"] >= sent and payload["data"]["contact"].get("email") == email:
                        key = payload["data"]["segment"]["key"]
                        return RealTime(serve.url, payload["type"], key, row["received_at"] - sent)
                time.sleep(0.01)
        raise TimeoutError(f"no webhook for {customer} reached the receiver within {timeout:.0f} s")

    def received(self) -> dict[str, Any]:
        """What the sandbox's receiver accepted (signature verified), rejected and saw twice."""
        state: dict[str, Any] = self.sandbox.receiver.state("demo")
        return state

    def segment_sizes(self) -> dict[str, int]:
        """Members per segment key."""
        sg, m = segments.c, memberships.c
        query = (
            select(sg.key, func.count(m.contact_id))
            .select_from(segments.outerjoin(memberships, m.segment_id == sg.id))
            .group_by(sg.key)
        )
        with self.engine.connect() as conn:
            return {key: int(n) for key, n in conn.execute(query)}

    def last_transition(self) -> int:
        """The id of the newest transition (0 for none): a mark to count what a step moves."""
        with self.engine.connect() as conn:
            return last_transition_id(conn)

    def moved_since(self, mark: int) -> dict[str, tuple[int, int]]:
        """Per segment key, the (entered, left) transitions written after `mark`."""
        with self.engine.connect() as conn:
            return moved(conn, after_id=mark)

    def explain_a_member(self) -> tuple[int, str, Explanation] | None:
        """Why one member of the first segment that has any is in it, by the independent evaluator."""
        sg, m = segments.c, memberships.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(m.contact_id, sg.key)
                .join(segments, sg.id == m.segment_id)
                .order_by(sg.key, m.contact_id)
            ).first()
            if row is None:
                return None
            data = load_contact(conn, row.contact_id)
        assert data is not None
        return (
            row.contact_id,
            row.key,
            Explainer(
                self.settings.segments,
                data,
                now=self.sandbox_now(),
                region=self.settings.field_mapping.identity.default_region,
            ).segment(row.key),
        )

    def tick(self, days: int) -> dict[str, Any]:
        """Advance the sandbox's world through its control API, as `crmhub sandbox tick` does."""
        response = httpx.post(f"{self.server.url}/_sandbox/tick", json={"days": days}, timeout=60)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def fields(self, examples: int = 8) -> FieldSummary:
        """Fields in the registry, by source, with a spread of examples."""
        fd = field_definitions.c
        with self.engine.connect() as conn:
            grouped = conn.execute(select(fd.source, func.count()).group_by(fd.source).order_by(fd.source))
            by_source = {source: int(n) for source, n in grouped}
            picked = conn.execute(select(fd.name, fd.type, fd.source).order_by(fd.source, fd.id)).all()
        per_source = max(1, examples // max(1, len(by_source)))
        shown: list[tuple[str, str]] = []
        counts: dict[str, int] = {}
        for name, ftype, source in picked:
            if counts.get(source, 0) < per_source:
                counts[source] = counts.get(source, 0) + 1
                shown.append((name, ftype))
        return FieldSummary(sum(by_source.values()), {k or "rule": v for k, v in by_source.items()}, shown)

    def store(self) -> StoreSummary:
        """Counts of what the store holds."""
        with self.engine.connect() as conn:

            def count(table: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

            return StoreSummary(
                records=count(records),
                contacts=count(contacts),
                identities=count(contact_identities),
                merges=count(merge_log),
                quarantined=count(quarantine),
            )
