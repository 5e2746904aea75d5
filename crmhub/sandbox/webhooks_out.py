"""Provider webhooks sent out of the sandbox, signed the way Stripe, HubSpot and Typeform sign theirs.

Signatures use the real clock (not the sandbox clock), because the SDKs' verifiers compare the
signed timestamp with the time on the machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from crmhub.sandbox import credentials
from crmhub.sandbox.world import Notification

PROVIDERS = ("stripe", "hubspot", "typeform")
_HUBSPOT_BATCH = 100


@dataclass(frozen=True)
class Outgoing:
    """One signed request ready to send."""

    provider: str
    url: str
    body: bytes
    headers: dict[str, str]


def invoice_paid(customer: str, email: str, at: int) -> bytes:
    """A Stripe `invoice.paid` event (unix time `at`) for a customer with an e-mail, as a webhook body."""
    invoice = {
        "id": f"in_{customer}",
        "object": "invoice",
        "customer": customer,
        "customer_email": email,
        "status": "paid",
        "amount_paid": 4900,
        "currency": "usd",
        "created": at,
    }
    event = {
        "id": f"evt_{customer}",
        "object": "event",
        "created": at,
        "type": "invoice.paid",
        "livemode": False,
        "data": {"object": invoice},
    }
    return _dumps(event)


def stripe_headers(body: bytes, timestamp: int) -> dict[str, str]:
    """The headers Stripe sends with `body`, signed with the sandbox's webhook secret."""
    signature = stripe_signature(body, credentials.STRIPE_WEBHOOK_SECRET, timestamp)
    return {"content-type": "application/json", "stripe-signature": signature}


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature`: `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def hubspot_signature_v3(method: str, uri: str, body: bytes, timestamp_ms: int, secret: str) -> str:
    """`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp (ms)."""
    message = f"{method}{uri}".encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def typeform_signature(body: bytes, secret: str) -> str:
    """`Typeform-Signature`: `sha256=<base64 HMAC-SHA256 of the body>`."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def build_requests(
    notifications: list[Notification], targets: dict[str, str], clock: Callable[[], float] = time.time
) -> list[Outgoing]:
    """Signed requests for every notification whose provider has a target (none configured: none sent)."""
    now = clock()
    out: list[Outgoing] = []
    hubspot_events: list[Any] = []
    for note in notifications:
        url = targets.get(note.provider)
        if not url:
            continue
        if note.provider == "hubspot":
            hubspot_events.append(note.payload)
            continue
        body = _dumps(note.payload)
        content = {"content-type": "application/json; charset=utf-8"}
        if note.provider == "stripe":
            signature = stripe_signature(body, credentials.STRIPE_WEBHOOK_SECRET, int(now))
            out.append(Outgoing("stripe", url, body, content | {"stripe-signature": signature}))
        else:
            signature = typeform_signature(body, credentials.TYPEFORM_WEBHOOK_SECRET)
            out.append(Outgoing("typeform", url, body, content | {"typeform-signature": signature}))
    # HubSpot batches up to 100 events into one request whose body is a JSON array.
    for start in range(0, len(hubspot_events), _HUBSPOT_BATCH):
        body = _dumps(hubspot_events[start : start + _HUBSPOT_BATCH])
        stamp = int(now * 1000)
        url = targets["hubspot"]
        headers = {
            "content-type": "application/json",
            "x-hubspot-signature-v3": hubspot_signature_v3(
                "POST", url, body, stamp, credentials.HUBSPOT_CLIENT_SECRET
            ),
            "x-hubspot-request-timestamp": str(stamp),
        }
        out.append(Outgoing("hubspot", url, body, headers))
    return out


@dataclass
class Dispatcher:
    """Where provider webhooks go, and what happened to each one sent."""

    targets: dict[str, str] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    timeout: float = 10.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, targets: dict[str, str | None]) -> None:
        """Set (a URL) or clear (`None` or "") the target of each named provider."""
        unknown = set(targets) - set(PROVIDERS)
        if unknown:
            raise ValueError(
                f"unknown webhook provider {sorted(unknown)[0]!r}; expected {', '.join(PROVIDERS)}"
            )
        for provider, url in targets.items():
            if url:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"{provider} webhook target must be an http(s) URL, got {url!r}")
                self.targets[provider] = url
            else:
                self.targets.pop(provider, None)

    def _record(self, request: Outgoing, status: int | None, error: str | None) -> dict[str, Any]:
        row = {"provider": request.provider, "url": request.url, "status": status, "error": error}
        with self._lock:
            self.results.append(row)
        return row

    def send(self, notifications: list[Notification]) -> list[dict[str, Any]]:
        """Deliver synchronously (from a thread that is not the server's)."""
        rows = []
        with httpx.Client(timeout=self.timeout) as client:
            for request in build_requests(notifications, self.targets):
                try:
                    answer = client.post(request.url, content=request.body, headers=request.headers)
                    rows.append(self._record(request, answer.status_code, None))
                except httpx.HTTPError as exc:
                    rows.append(self._record(request, None, f"{type(exc).__name__}: {exc}"))
        return rows

    async def send_async(self, notifications: list[Notification]) -> list[dict[str, Any]]:
        """Deliver from inside the server's event loop, so a target on this same server can answer."""
        rows = []
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for request in build_requests(notifications, self.targets):
                try:
                    answer = await client.post(request.url, content=request.body, headers=request.headers)
                    rows.append(self._record(request, answer.status_code, None))
                except httpx.HTTPError as exc:
                    rows.append(self._record(request, None, f"{type(exc).__name__}: {exc}"))
        return rows
