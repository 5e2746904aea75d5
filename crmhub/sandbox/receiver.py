"""A Standard Webhooks consumer at `/_receiver/{name}`: verifies, de-duplicates and records deliveries.

It stands for the SMS and e-mail tools that receive crmhub's `segment.entered` / `segment.left`
webhooks. A request is accepted (200) when `webhook-signature` matches one of the receiver's secrets
(`credentials.RECEIVER_SECRET` unless changed) and `webhook-timestamp` is within five minutes;
otherwise it is refused with 401. A repeated `webhook-id` is answered 200 again but recorded once,
as a consumer using the id as its idempotency key would. Failures (5xx rate, 410, slowness,
timeouts, dropped connections) come from the `receiver` fault rules, like every other API's.
"""

from __future__ import annotations

import binascii
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from crmhub.sandbox import credentials
from crmhub.sandbox.asgi import Request, Response, Router, json_response


@dataclass
class Accepted:
    """One delivery the receiver accepted."""

    name: str
    webhook_id: str
    timestamp: int
    payload: Any
    # Wall-clock arrival (unix seconds), for measuring end-to-end latency.
    received_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        """The delivery as JSON-ready data."""
        return {
            "name": self.name,
            "webhook_id": self.webhook_id,
            "timestamp": self.timestamp,
            "received_at": self.received_at,
            "payload": self.payload,
        }


@dataclass
class Receiver:
    """The receiver's secrets and what it has seen."""

    secrets: list[str] = field(default_factory=lambda: [credentials.RECEIVER_SECRET])
    accepted: list[Accepted] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, router: Router) -> None:
        """Add the receiving route to `router`."""
        router.add("POST", "/_receiver/{name}", self.receive)

    def receive(self, request: Request) -> Response:
        """Verify one delivery and record it once."""
        text = request.body.decode("utf-8", errors="replace")
        payload = None
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(text, request.headers)
                break
            except (WebhookVerificationError, ValueError, binascii.Error):
                continue
        if payload is None:
            with self._lock:
                self.rejected += 1
            return json_response(401, {"error": "invalid webhook signature or timestamp"})
        webhook_id = request.headers["webhook-id"]
        with self._lock:
            if webhook_id in self._seen:
                self.duplicates += 1
                return json_response(200, {"status": "duplicate", "webhook_id": webhook_id})
            self._seen.add(webhook_id)
            name = request.path_params["name"]
            self.accepted.append(
                Accepted(name, webhook_id, int(request.headers["webhook-timestamp"]), payload)
            )
        return json_response(200, {"status": "accepted", "webhook_id": webhook_id})

    def state(self, name: str | None = None) -> dict[str, Any]:
        """Accepted deliveries (optionally of one receiver name) and the tallies."""
        with self._lock:
            rows = [a.describe() for a in self.accepted if name is None or a.name == name]
            return {"accepted": rows, "duplicates": self.duplicates, "rejected": self.rejected}

    def configure(self, secrets: list[str]) -> None:
        """Replace the secrets the receiver accepts (several for rotation)."""
        if not secrets or not all(isinstance(s, str) and s for s in secrets):
            raise ValueError("secrets must be a non-empty list of strings")
        for secret in secrets:
            Webhook(secret)
        self.secrets = list(secrets)

    def reset(self) -> None:
        """Forget everything received."""
        with self._lock:
            self.accepted.clear()
            self._seen.clear()
            self.duplicates = self.rejected = 0
