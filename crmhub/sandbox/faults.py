"""Faults on demand, per API: rate limits, server errors, latency, timeouts and dropped connections.

A fault is written `API:KIND[:WHEN]` (command line) or given as a `Fault` (Python, control endpoint):

- `API` is one of `stripe`, `hubspot`, `typeform`, `segmentio`, `receiver`;
- `KIND` is `429` (with `Retry-After` and the provider's own rate-limit body), another status such as
  `500`, `503` or `410`, `drop` (the connection is closed without an answer), `latency=MS` (the
  answer is delayed by MS milliseconds and then given normally) or `timeout` (the answer is held
  for `timeout_seconds`, 30 by default, so the client's own timeout fires first);
- `WHEN` is a rate with a decimal point (`0.2`: one request in five, drawn from a generator seeded
  by the sandbox seed, so a run is repeatable) or a whole number (`3`: the next three requests).
  Without it the fault applies to every request.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from crmhub.sandbox.asgi import Response, json_response

APIS = ("stripe", "hubspot", "typeform", "segmentio", "receiver")


class FaultSpecError(ValueError):
    """A fault description that cannot be understood."""


@dataclass
class Fault:
    """One fault rule: what happens, to which API, how often."""

    api: str
    kind: str
    rate: float = 1.0
    count: int | None = None
    latency_ms: int = 0
    retry_after: int = 1
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise FaultSpecError(f"unknown API {self.api!r}; expected one of {', '.join(APIS)}")
        if self.kind not in ("drop", "latency", "timeout") and not (
            self.kind.isdigit() and 400 <= int(self.kind) <= 599
        ):
            raise FaultSpecError(
                f"unknown fault {self.kind!r}; expected a 4xx/5xx status, drop, latency=MS or timeout"
            )
        if not 0.0 <= self.rate <= 1.0:
            raise FaultSpecError(f"rate {self.rate} is outside 0..1")
        if self.count is not None and self.count < 1:
            raise FaultSpecError(f"count {self.count} must be at least 1")

    def describe(self) -> dict[str, object]:
        """The rule as JSON-ready data."""
        return {
            "api": self.api,
            "kind": self.kind,
            "rate": self.rate,
            "remaining": self.count,
            "latency_ms": self.latency_ms,
            "retry_after": self.retry_after,
        }


def parse_fault(spec: str) -> Fault:
    """A `Fault` from `API:KIND[:WHEN]`, e.g. `stripe:429:0.2`, `hubspot:503:3`, `typeform:latency=200`."""
    parts = spec.strip().split(":")
    if len(parts) not in (2, 3):
        raise FaultSpecError(f"fault {spec!r} is not API:KIND[:WHEN] (e.g. stripe:429:0.2)")
    api, kind = parts[0].lower(), parts[1].lower()
    latency = 0
    if kind.startswith("latency="):
        try:
            latency = int(kind.removeprefix("latency="))
        except ValueError as exc:
            raise FaultSpecError(f"latency in {spec!r} must be whole milliseconds") from exc
        kind = "latency"
    rate, count = 1.0, None
    if len(parts) == 3:
        when = parts[2]
        try:
            if "." in when:
                rate = float(when)
            else:
                count = int(when)
        except ValueError as exc:
            raise FaultSpecError(f"WHEN in {spec!r} must be a rate like 0.2 or a count like 3") from exc
    return Fault(api, kind, rate=rate, count=count, latency_ms=latency)


class Faults:
    """The active fault rules; thread-safe, deterministic for a seed and an order of requests."""

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rules: list[tuple[Fault, random.Random]] = []

    def add(self, fault: Fault) -> None:
        """Activate `fault` (after the ones already active)."""
        with self._lock:
            rng = random.Random(f"fault:{self._seed}:{len(self._rules)}:{fault.api}:{fault.kind}")
            self._rules.append((fault, rng))

    def clear(self, api: str | None = None) -> None:
        """Remove every rule, or those of one API."""
        with self._lock:
            self._rules = [(f, r) for f, r in self._rules if api is not None and f.api != api]

    def active(self) -> list[Fault]:
        """The rules still in force."""
        with self._lock:
            return [fault for fault, _ in self._rules]

    def draw(self, api: str) -> Fault | None:
        """The fault that hits the next request to `api`, if any; counted rules are used up."""
        if not self._rules:
            return None
        with self._lock:
            for position, (fault, rng) in enumerate(self._rules):
                if fault.api != api:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        del self._rules[position]
                    return fault
                if fault.rate >= 1.0 or rng.random() < fault.rate:
                    return fault
        return None


def fault_response(api: str, fault: Fault) -> Response:
    """The answer a provider gives for `fault`, with its own error body."""
    if fault.kind == "drop":
        return Response(500, drop=True)
    status = int(fault.kind)
    headers = [(b"retry-after", str(fault.retry_after).encode())] if status in (429, 503) else []
    return json_response(status, _error_body(api, status), headers)


def _error_body(api: str, status: int) -> object:
    limited = status == 429
    if api == "stripe":
        if limited:
            return {
                "error": {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Too many requests hit the API too quickly. Retry with exponential backoff.",
                }
            }
        return {"error": {"type": "api_error", "message": f"The sandbox injected an HTTP {status} error."}}
    if api == "hubspot":
        if limited:
            return {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": "00000000-0000-4000-8000-000000000429",
                "policyName": "SECONDLY",
            }
        return {
            "status": "error",
            "message": f"The sandbox injected an HTTP {status} error.",
            "category": "INTERNAL_ERROR",
        }
    if api == "typeform":
        code = "RATE_LIMIT_EXCEEDED" if limited else "INTERNAL_ERROR"
        return {
            "code": code,
            "description": "Too many requests" if limited else f"Injected HTTP {status} error",
        }
    return {"success": False, "message": "Too many requests" if limited else f"Injected HTTP {status} error"}
