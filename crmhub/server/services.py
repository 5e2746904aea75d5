"""What the server's routes and background loops share: settings, the store, the sync engine, a clock."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import httpx
from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from connectors import HubSpotSource, Record, default_http_client
from crmhub.jobs import JobOutcome, run_job
from crmhub.server.metrics import Metrics
from crmhub.settings import Settings, secret
from crmhub.wiring import build_sources, build_sync_engine, pull_source_names
from sync.schedule import Job
from sync.store import status
from webhooks.inbound import HubSpotFetch, InboundReceiver

__all__ = ["Services", "services"]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """One per server process; routes reach it through `services(request)`."""

    settings: Settings
    engine: Engine
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Clock = _utc_now
    metrics: Metrics = field(default_factory=Metrics)
    # Set when new outbox rows may be waiting, so the delivery worker looks at once instead of polling.
    wake_worker: Callable[[], None] = lambda: None
    # Set on shutdown: a running sync stops at its next page boundary.
    stopping: threading.Event = field(default_factory=threading.Event)
    _receiver: InboundReceiver | None = None
    _http: httpx.Client | None = None
    _build_lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def receiver(self) -> InboundReceiver:
        """The inbound receiver; raises WebhookConfigError when a secret it needs is unset."""
        with self._build_lock:
            if self._receiver is None:
                settings = self.settings
                fetch, typed = None, []
                if settings.connectors.hubspot.enabled:
                    # HubSpot webhooks name contacts by id only; the receiver reads them whole.
                    self._http = self._http or default_http_client(settings.connectors)
                    [hubspot] = build_sources(settings, ["hubspot"], self._http, self.environ)
                    assert isinstance(hubspot, HubSpotSource)
                    fetch, typed = self._hubspot_fetch(hubspot), [hubspot]
                # Built on first use; its mapper learns fields as they come, typed as HubSpot declares.
                sync_engine = build_sync_engine(settings, self.engine, typed)
                write_key = None
                if settings.connectors.segmentio.enabled:
                    path = "connectors.segmentio.write_key_env"
                    write_key = secret(settings, path, self.environ).get_secret_value()
                self._receiver = InboundReceiver(
                    settings.webhooks.inbound, self.environ, sync_engine, fetch, write_key
                )
            return self._receiver

    def _hubspot_fetch(self, hubspot: HubSpotSource) -> HubSpotFetch:
        """Contacts read by id with property definitions kept fresh (this Source lives as the server does)."""

        def fetch(ids: Sequence[str]) -> list[Record]:
            return hubspot.read_contacts(ids, now=self.clock())

        return fetch

    def start_thread(self, target: Callable[..., object], *args: object, name: str) -> None:
        """Run `target(*args)` on a thread that shutdown waits for (a sync asked for through the API)."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._build_lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def join_threads(self, timeout: float) -> None:
        """Wait up to `timeout` for the threads of `start_thread`; they stop at a page boundary."""
        for thread in list(self._threads):
            thread.join(timeout)

    def close(self) -> None:
        """Close the provider connection the receiver holds, and the store's connections."""
        if self._http is not None:
            self._http.close()
        self.engine.dispose()

    def run(self, job: Job, *, trigger: str, full: bool = False) -> JobOutcome:
        """Run a sync or re-evaluation job now, recording it in the metrics and waking the worker."""
        outcome = run_job(
            self.settings,
            self.engine,
            job,
            clock=self.clock,
            trigger=trigger,
            full=full,
            should_stop=self.stopping.is_set,
            environ=self.environ,
        )
        self.metrics.observe_job(outcome)
        self.wake_worker()
        return outcome

    def store_problem(self) -> str | None:
        """Why the store cannot serve now (unreachable, schema behind), or None when it can."""
        try:
            schema = status(self.engine)
        except DBAPIError as exc:
            return f"database unreachable: {exc.orig}; check database.url"
        if not schema.known:
            return str(schema.unknown_error())
        if not schema.up_to_date:
            return "database schema is behind this version of crmhub; run `crmhub db upgrade`"
        return None

    def sync_job(self, sources: list[str] | None = None) -> Job:
        """A sync of the enabled pull sources (or of `sources`), for "sync now"."""
        return Job("sync", "", tuple(pull_source_names(self.settings, sources)))


def services(request: Request) -> Services:
    """The process's services, for a route's `Depends`."""
    return cast(Services, request.app.state.services)
