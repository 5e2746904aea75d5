"""The sandbox's own control API under `/_sandbox/` (no authentication: it listens on loopback).

| request | does |
| --- | --- |
| `GET /_sandbox/state` | clock, counts of every object kind per source, active faults, webhook targets |
| `POST /_sandbox/tick` `{"days": N}` | advance the clock N days (default 1), mutate data, send webhooks |
| `GET /_sandbox/faults` | active fault rules |
| `POST /_sandbox/faults` `{"spec": "stripe:429:0.2"}` or `{"specs": [...]}` or a rule object | add faults |
| `DELETE /_sandbox/faults[?api=stripe]` | remove all faults, or one API's |
| `GET /_sandbox/webhooks` | provider webhook targets and the result of every delivery |
| `POST /_sandbox/webhooks` `{"stripe": URL, "hubspot": URL, "typeform": URL}` | set targets (null clears) |
| `GET /_sandbox/segmentio/received` | messages the Segment.com collector accepted |
| `DELETE /_sandbox/segmentio/received` | forget them |
| `GET /_sandbox/segmentio/product-events` | generated product events to send through a Segment.com SDK |
| `GET /_sandbox/receiver[?name=N]` | deliveries the receiver accepted, duplicates, rejections |
| `POST /_sandbox/receiver` `{"secrets": [...]}` | secrets the receiver accepts |
| `DELETE /_sandbox/receiver` | forget what it received |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crmhub.sandbox.asgi import Request, Response, Router, json_response
from crmhub.sandbox.faults import Fault, Faults, FaultSpecError, parse_fault
from crmhub.sandbox.receiver import Receiver
from crmhub.sandbox.webhooks_out import Dispatcher
from crmhub.sandbox.world import World


def _bad(message: str) -> Response:
    return json_response(400, {"error": message})


def fault_from_json(value: Any) -> Fault:
    """A `Fault` from a spec string or an object with the `Fault` fields."""
    if isinstance(value, str):
        return parse_fault(value)
    if not isinstance(value, dict):
        raise FaultSpecError("a fault is a spec string or an object")
    allowed = {"api", "kind", "rate", "count", "latency_ms", "retry_after", "timeout_seconds"}
    unknown = set(value) - allowed
    if unknown:
        raise FaultSpecError(f"unknown fault field {sorted(unknown)[0]!r}")
    try:
        return Fault(**value)
    except TypeError as exc:
        raise FaultSpecError(str(exc)) from None


class ControlApi:
    """Handlers over the sandbox's parts."""

    def __init__(self, world: World, faults: Faults, receiver: Receiver, webhooks: Dispatcher) -> None:
        self.world, self.faults, self.receiver, self.webhooks = world, faults, receiver, webhooks

    def register(self, router: Router) -> None:
        """Add every control route to `router`."""
        router.add("GET", "/_sandbox/state", self.state)
        router.add("POST", "/_sandbox/tick", self.tick)
        router.add("GET", "/_sandbox/faults", self.list_faults)
        router.add("POST", "/_sandbox/faults", self._json(self.add_faults))
        router.add("DELETE", "/_sandbox/faults", self.clear_faults)
        router.add("GET", "/_sandbox/webhooks", self.list_webhooks)
        router.add("POST", "/_sandbox/webhooks", self._json(self.set_webhooks))
        router.add("GET", "/_sandbox/segmentio/received", self.segmentio_received)
        router.add("DELETE", "/_sandbox/segmentio/received", self.segmentio_clear)
        router.add("GET", "/_sandbox/segmentio/product-events", self.product_events)
        router.add("GET", "/_sandbox/receiver", self.receiver_state)
        router.add("POST", "/_sandbox/receiver", self._json(self.receiver_configure))
        router.add("DELETE", "/_sandbox/receiver", self.receiver_reset)

    def _json(self, handler: Callable[[Any], Response]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                return handler(request.json())
            except ValueError as exc:
                return _bad(str(exc))

        return handle

    def state(self, request: Request) -> Response:
        """Counts, clock, faults and webhook targets."""
        body = self.world.counts() | {
            "seed": self.world.seed,
            "faults": [f.describe() for f in self.faults.active()],
            "webhook_targets": dict(self.webhooks.targets),
            "receiver": {k: v for k, v in self.receiver.state().items() if k != "accepted"}
            | {"accepted": len(self.receiver.accepted)},
        }
        return json_response(200, body)

    async def tick(self, request: Request) -> Response:
        """Advance time, then deliver the provider webhooks the changes caused."""
        try:
            body = request.json() or {}
            days = int(body.get("days", 1)) if isinstance(body, dict) else int(body)
            report = self.world.tick(days)
        except (ValueError, TypeError) as exc:
            return _bad(f"days must be a whole number of at least 1 ({exc})")
        deliveries = await self.webhooks.send_async(report.notifications)
        return json_response(200, report.summary() | {"webhooks_sent": len(deliveries)})

    def list_faults(self, request: Request) -> Response:
        """Active fault rules."""
        return json_response(200, {"faults": [f.describe() for f in self.faults.active()]})

    def add_faults(self, body: Any) -> Response:
        """Add one or more faults."""
        if isinstance(body, dict) and "specs" in body:
            items = body["specs"]
        elif isinstance(body, dict) and "spec" in body:
            items = [body["spec"]]
        else:
            items = body if isinstance(body, list) else [body]
        faults = [fault_from_json(item) for item in items]
        for fault in faults:
            self.faults.add(fault)
        return json_response(200, {"faults": [f.describe() for f in self.faults.active()]})

    def clear_faults(self, request: Request) -> Response:
        """Remove faults (all, or `?api=` one API's)."""
        self.faults.clear(request.arg("api"))
        return json_response(200, {"faults": [f.describe() for f in self.faults.active()]})

    def list_webhooks(self, request: Request) -> Response:
        """Targets and delivery results."""
        return json_response(
            200, {"targets": dict(self.webhooks.targets), "deliveries": list(self.webhooks.results)}
        )

    def set_webhooks(self, body: Any) -> Response:
        """Set or clear provider webhook targets."""
        if not isinstance(body, dict):
            return _bad('expected {"stripe": URL, "hubspot": URL, "typeform": URL}')
        self.webhooks.configure(body)
        return json_response(200, {"targets": dict(self.webhooks.targets)})

    def segmentio_received(self, request: Request) -> Response:
        """What the Segment.com collector accepted."""
        return json_response(200, {"received": list(self.world.segmentio_received)})

    def segmentio_clear(self, request: Request) -> Response:
        """Forget what the collector accepted."""
        self.world.segmentio_received.clear()
        return json_response(200, {"received": []})

    def product_events(self, request: Request) -> Response:
        """The generated product events (Segment Spec `identify`/`track`)."""
        return json_response(200, {"events": list(self.world.product_events)})

    def receiver_state(self, request: Request) -> Response:
        """What the Standard Webhooks receiver accepted."""
        return json_response(200, self.receiver.state(request.arg("name")))

    def receiver_configure(self, body: Any) -> Response:
        """Set the receiver's secrets."""
        if not isinstance(body, dict):
            return _bad('expected {"secrets": [...]}')
        self.receiver.configure(body.get("secrets") or [])
        return json_response(200, {"secrets": len(self.receiver.secrets)})

    def receiver_reset(self, request: Request) -> Response:
        """Forget what the receiver accepted."""
        self.receiver.reset()
        return json_response(200, self.receiver.state())
