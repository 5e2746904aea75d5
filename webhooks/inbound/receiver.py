"""The inbound receiver: verify, parse, and ingest through the sync engine, idempotently by event id."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from connectors import ConnectorError
from sync.engine import SyncEngine
from sync.inbound import AlreadyReceivedError, seen_events
from webhooks.exceptions import WebhookConfigError
from webhooks.inbound import signatures
from webhooks.inbound.config import InboundConfig
from webhooks.inbound.events import (
    HubSpotFetch,
    Parsed,
    hubspot_batch,
    hubspot_events,
    load_json,
    segmentio_batch,
    stripe_batch,
    typeform_batch,
)
from webhooks.inbound.request import InboundError, InboundRequest, InboundResponse
from webhooks.inbound.tracking import TRACKING_KINDS, SegmentioApiError, TrackingKind, parse_tracking

__all__ = [
    "NOT_ENABLED_RETRY_SECONDS",
    "PROVIDERS",
    "STORE_ERRORS",
    "STORE_RETRY_SECONDS",
    "InboundReceiver",
    "Provider",
    "store_unavailable",
]

Provider = Literal["stripe", "hubspot", "typeform", "segmentio"]
PROVIDERS: tuple[Provider, ...] = ("stripe", "hubspot", "typeform", "segmentio")

# A route that exists but is off answers 503, not 404: Typeform turns a webhook off on 404, HubSpot
# never retries a 4xx and Segment.com's libraries drop it, so events sent before the operator enables
# the provider would be lost. Providers that honour Retry-After come back every few minutes.
NOT_ENABLED_RETRY_SECONDS = 300
# A busy or unreachable store is usually over in seconds (another writer's transaction, a restart).
STORE_RETRY_SECONDS = 10

log = logging.getLogger(__name__)

# What the store raises when it is busy, locked or down (the pool's TimeoutError: no connection free).
STORE_ERRORS = (DBAPIError, PoolTimeoutError)


class InboundReceiver:
    """Handles provider webhooks and Segment.com Tracking API calls; built once per process."""

    def __init__(
        self,
        config: InboundConfig,
        secrets: Mapping[str, str],
        sync_engine: SyncEngine,
        hubspot_fetch: HubSpotFetch | None = None,
        segmentio_write_key: str | None = None,
    ) -> None:
        """`secrets` maps environment variable names to values (`os.environ` will do)."""
        self.config = config
        self.sync_engine = sync_engine
        self.hubspot_fetch = hubspot_fetch
        self.segmentio_write_key = segmentio_write_key or None
        self._secrets: dict[str, str] = {}
        for path, env in config.secret_envs().items():
            value = secrets.get(env)
            if not value:
                raise WebhookConfigError(
                    f"{path}: expected environment variable {env} to hold the secret, "
                    f"found it unset: set {env}"
                )
            self._secrets[path.split(".")[2]] = value
        if config.hubspot.enabled and hubspot_fetch is None:
            raise WebhookConfigError(
                "webhooks.inbound.hubspot.enabled: HubSpot webhooks name contacts by id only, and crmhub "
                "reads them through the HubSpot API: set connectors.hubspot.enabled = true"
            )

    def receive(self, provider: Provider, request: InboundRequest, *, now: datetime) -> InboundResponse:
        """One provider webhook (or Segment.com destination call): 200, or 4xx/503 with the cause and fix."""
        try:
            return self._receive(provider, request, now)
        except InboundError as exc:
            return exc.response()
        except STORE_ERRORS as exc:
            return _store_unavailable(provider, exc, InboundError)

    def track_api(self, kind: TrackingKind, request: InboundRequest, *, now: datetime) -> InboundResponse:
        """One Segment.com Tracking API call, answered as Segment.com answers."""
        try:
            if kind not in TRACKING_KINDS:
                raise SegmentioApiError(
                    404, "not_found", f"segmentio: no /v1/{kind}: use {', '.join(TRACKING_KINDS)}"
                )
            if self.segmentio_write_key is None:
                raise SegmentioApiError(
                    503,
                    "not_enabled",
                    "segmentio: the Tracking API is off: set connectors.segmentio.enabled = true and its "
                    "write_key_env, then restart crmhub serve (answered 503 so that the library retries)",
                    {"retry-after": str(NOT_ENABLED_RETRY_SECONDS)},
                )
            parsed = parse_tracking(kind, request, self.segmentio_write_key, now=now)
            answer = self._ingest("segmentio", parsed, now, trigger="push")
        except InboundError as exc:
            return exc.response()
        except STORE_ERRORS as exc:
            return _store_unavailable("segmentio", exc, SegmentioApiError)
        return InboundResponse(answer.status, {"success": True, **answer.body}, answer.headers)

    def _receive(self, provider: Provider, request: InboundRequest, now: datetime) -> InboundResponse:
        if provider not in PROVIDERS:
            raise InboundError(
                404, "unknown_provider", f"no inbound provider {provider!r}: use {', '.join(PROVIDERS)}"
            )
        settings = getattr(self.config, provider)
        if not settings.enabled:
            raise InboundError(
                503,
                "not_enabled",
                f"{provider}: inbound webhooks are off: set webhooks.inbound.{provider}.enabled = true, "
                f"then restart crmhub serve (answered 503 so that {provider} retries until then)",
                {"retry-after": str(NOT_ENABLED_RETRY_SECONDS)},
            )
        if len(request.body) > settings.max_body_bytes:
            raise InboundError(
                413,
                "payload_too_large",
                f"{provider}: the body of {len(request.body)} bytes is over the {settings.max_body_bytes} "
                f"byte limit: raise webhooks.inbound.{provider}.max_body_bytes if this is expected",
            )
        secret = self._secrets[provider]
        if provider == "stripe":
            signatures.verify_stripe(request, secret, tolerance=settings.tolerance_seconds, now=now)
            return self._ingest(provider, stripe_batch(load_json(provider, request.body)), now)
        if provider == "hubspot":
            signatures.verify_hubspot(request, secret, tolerance=settings.tolerance_seconds, now=now)
            return self._hubspot(hubspot_events(load_json(provider, request.body)), now)
        if provider == "typeform":
            signatures.verify_typeform(request, secret)
            return self._ingest(provider, typeform_batch(load_json(provider, request.body)), now)
        signatures.verify_segmentio(request, secret)
        return self._ingest(
            provider, segmentio_batch(load_json(provider, request.body), received_at=now), now
        )

    def _hubspot(self, parsed: Parsed, now: datetime) -> InboundResponse:
        if not parsed.pending:
            return _ignored(parsed)
        if self._all_seen("hubspot", parsed.event_ids):
            # Read nothing from HubSpot for a delivery already stored.
            return _duplicate()
        assert self.hubspot_fetch is not None  # checked in __init__
        try:
            batch = hubspot_batch(parsed.pending, self.hubspot_fetch)
        except ConnectorError as exc:
            raise InboundError(
                503,
                "provider_unavailable",
                f"hubspot: reading the changed contacts failed ({exc}); nothing was stored and HubSpot "
                "will retry: check connectors.hubspot (token, scopes crm.objects.contacts.read)",
                {"retry-after": "30"},
            ) from None
        return self._ingest("hubspot", Parsed(batch, parsed.event_ids, parsed.ignored), now)

    def _all_seen(self, source: str, event_ids: list[str]) -> bool:
        with self.sync_engine.engine.connect() as conn:
            return len(seen_events(conn, source, event_ids)) == len(set(event_ids))

    def _ingest(
        self, source: str, parsed: Parsed, now: datetime, trigger: str = "webhook"
    ) -> InboundResponse:
        if parsed.batch is None or not (parsed.batch.records or parsed.batch.events):
            return _ignored(parsed)
        if parsed.event_ids and self._all_seen(source, parsed.event_ids):
            return _duplicate()
        try:
            result = self.sync_engine.ingest(
                parsed.batch, now=now, trigger=trigger, event_ids=parsed.event_ids
            )
        except AlreadyReceivedError:
            # Claimed by a concurrent delivery of the same events between the look above and now.
            return _duplicate()
        body: dict[str, Any] = {
            "duplicate": False,
            "records": result.records,
            "events": result.events,
            "quarantined": result.quarantined,
            "contacts": len(result.contacts),
            "transitions": result.evaluation.transitions if result.evaluation else 0,
        }
        if parsed.ignored:
            body["ignored"] = parsed.ignored
        return InboundResponse(200, body)


def _store_unavailable(
    source: str, exc: DBAPIError | PoolTimeoutError, error: type[InboundError]
) -> InboundResponse:
    """503 for a store that is busy or down, its cause logged on one line and kept out of the answer."""
    message = store_unavailable(source, exc)
    return error(503, "store_unavailable", message, {"retry-after": str(STORE_RETRY_SECONDS)}).response()


def store_unavailable(source: str, exc: DBAPIError | PoolTimeoutError) -> str:
    """Log why the store failed `source`'s request on one line; the message to answer it with."""
    # exc.orig, not exc: SQLAlchemy's text carries the statement's parameters (e-mail addresses...).
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    log.warning(
        "inbound %s: answered 503, the store failed: %s: %s",
        source,
        type(cause).__name__,
        " ".join(str(cause).split()),
    )
    return (
        f"{source}: crmhub's store is busy or unreachable (the cause is in crmhub's log); nothing was "
        f"stored: send it again in {STORE_RETRY_SECONDS} s"
    )


def _duplicate() -> InboundResponse:
    return InboundResponse(200, {"duplicate": True})


def _ignored(parsed: Parsed) -> InboundResponse:
    return InboundResponse(200, {"duplicate": False, "stored": False, "ignored": parsed.ignored})
