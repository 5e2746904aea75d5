"""`Sandbox`: one ASGI app serving every look-alike under its provider's real paths, control and receiver.

| prefix | serves |
| --- | --- |
| `/v1/customers`, `/v1/subscriptions`, `/v1/invoices`, `/v1/charges`, `/v1/events`, ... | Stripe |
| `/v1/batch`, `/v1/identify`, `/v1/track`, ... | Segment.com collector |
| `/crm/v3/...` | HubSpot |
| `/forms...` | Typeform |
| `/_receiver/{name}` | Standard Webhooks receiver |
| `/_sandbox/...` | control API (see `crmhub.sandbox.control_api`) |
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from crmhub.sandbox.asgi import Response, Router, json_response, read_request, send_response
from crmhub.sandbox.control_api import ControlApi
from crmhub.sandbox.faults import Fault, Faults, fault_response, parse_fault
from crmhub.sandbox.hubspot_api import HubSpotApi
from crmhub.sandbox.receiver import Receiver
from crmhub.sandbox.segmentio_api import SegmentioApi
from crmhub.sandbox.stripe_api import StripeApi
from crmhub.sandbox.typeform_api import TypeformApi
from crmhub.sandbox.webhooks_out import Dispatcher
from crmhub.sandbox.world import EPOCH, World

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_SEGMENTIO_PATHS = frozenset(
    {"/v1/batch", "/v1/identify", "/v1/track", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"}
)


def api_of(path: str) -> str | None:
    """Which look-alike a path belongs to (`None` for the control API)."""
    if path in _SEGMENTIO_PATHS:
        return "segmentio"
    if path.startswith("/v1/"):
        return "stripe"
    if path.startswith("/crm/"):
        return "hubspot"
    if path.startswith("/forms"):
        return "typeform"
    if path.startswith("/_receiver/"):
        return "receiver"
    return None


def _not_found(api: str | None, method: str, path: str, known: bool) -> Response:
    status = 405 if known else 404
    if api == "stripe":
        message = f"Unrecognized request URL ({method}: {path})."
        return json_response(status, {"error": {"type": "invalid_request_error", "message": message}})
    if api == "hubspot":
        return json_response(
            status,
            {"status": "error", "message": f"No route for {method} {path}", "category": "OBJECT_NOT_FOUND"},
        )
    if api == "typeform":
        return json_response(status, {"code": "NOT_FOUND", "description": f"No route for {method} {path}"})
    return json_response(status, {"error": f"no route for {method} {path}"})


class Sandbox:
    """The whole sandbox: world, faults, receiver, outgoing webhooks, and the ASGI entry point."""

    def __init__(
        self, people: int = 200, seed: int = 0, start: int = EPOCH, faults: Iterable[Fault | str] = ()
    ) -> None:
        self.world = World(people=people, seed=seed, start=start)
        self.faults = Faults(seed)
        self.receiver = Receiver()
        self.webhooks = Dispatcher()
        self.router = Router()
        for part in (
            StripeApi(self.world),
            HubSpotApi(self.world),
            TypeformApi(self.world),
            SegmentioApi(self.world),
            ControlApi(self.world, self.faults, self.receiver, self.webhooks),
        ):
            part.register(self.router)
        self.receiver.register(self.router)
        for fault in faults:
            self.add_fault(fault)

    # -- Python control API (tests and the demo) ----------------------------------------------------

    def add_fault(self, fault: Fault | str) -> Fault:
        """Activate a fault, given as a `Fault` or a spec such as `stripe:429:0.2`."""
        rule = parse_fault(fault) if isinstance(fault, str) else fault
        self.faults.add(rule)
        return rule

    def clear_faults(self, api: str | None = None) -> None:
        """Remove every fault, or one API's."""
        self.faults.clear(api)

    def set_webhook_targets(self, **targets: str | None) -> None:
        """Where provider webhooks go: `stripe=URL`, `hubspot=URL`, `typeform=URL` (None clears)."""
        self.webhooks.configure(targets)

    def tick(self, days: int = 1) -> dict[str, Any]:
        """Advance time by `days`, mutate data and deliver provider webhooks; not from the server's thread."""
        report = self.world.tick(days)
        deliveries = self.webhooks.send(report.notifications)
        return report.summary() | {"webhooks_sent": len(deliveries)}

    # -- ASGI ---------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        api = api_of(request.path)
        fault = self.faults.draw(api) if api is not None else None
        if fault is not None and fault.kind in ("latency", "timeout"):
            await asyncio.sleep(fault.latency_ms / 1000 if fault.kind == "latency" else fault.timeout_seconds)
            fault = None
        if fault is not None:
            await send_response(send, fault_response(api or "", fault))
            return
        handler, params, known = self.router.match(request.method, request.path)
        if handler is None:
            await send_response(send, _not_found(api, request.method, request.path, known))
            return
        request.path_params = params
        with self.world.lock:
            result = handler(request)
        if inspect.isawaitable(result):
            result = await result
        await send_response(send, result)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
