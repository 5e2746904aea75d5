"""Segment.com as a destination: membership changes as an `identify` trait and an Audience track event."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from segment.analytics import Client
from segment.analytics.request import APIError

from webhooks.config import CONTACT_KEYS, SEGMENTIO_IDS, EndpointConfig
from webhooks.payload import largest_first
from webhooks.queue import Job
from webhooks.record import Attempt
from webhooks.ssrf import AddressPolicy, refusal

__all__ = ["SegmentioSender", "segmentio_messages"]

ENTERED, EXITED = "Audience Entered", "Audience Exited"
# Contact keys of a payload that are not traits: our ids, and the ids Segment.com knows the person by.
_NOT_TRAITS = frozenset({*CONTACT_KEYS, *SEGMENTIO_IDS})
# The SDK refuses a message over 32 KiB, serialised with ASCII escapes; the rest of a message (ids,
# context, properties, the library's own) takes well under 4 KiB. Traits go twice (identify, track).
_TRAITS_BUDGET = (32 << 10) // 2 - (4 << 10)


def _fit(traits: dict[str, Any]) -> list[str]:
    """Drop the largest traits until they fit a message; the names dropped, for the consumer to see."""
    sizes = {name: len(json.dumps({name: value}, default=str)) for name, value in traits.items()}
    left_out = largest_first(sizes, _TRAITS_BUDGET)
    for name in left_out:
        del traits[name]
    return sorted(left_out)


def segmentio_messages(job: Job, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The identify and track calls (keyword arguments) for one transition, as Segment Engage shapes them."""
    info = job.transition
    member = info.kind == "entered"
    contact = body["data"]["contact"]
    # crmhub's own keys (merged ids, the fields cut short) are not traits of the person: a consumer's aid.
    traits = {k: v for k, v in contact.items() if k not in _NOT_TRAITS and v is not None}
    left_out = _fit(traits)
    # The profile Segment.com knows the person by; our contact id only for people it never sent.
    known_user, anonymous = contact.get("segmentio_user"), contact.get("segmentio_anonymous")
    ids = {"user_id": str(known_user or info.contact_id)}
    if anonymous and not known_user:
        ids["anonymous_id"] = str(anonymous)
    personas = {"computation_class": "audience", "computation_key": info.segment_key}
    identify = {
        **ids,
        "traits": {**traits, info.segment_key: member},
        "context": {"personas": personas},
        "timestamp": info.occurred_at,
        # Stable across retries, so Segment.com drops a resent duplicate.
        "message_id": f"{job.webhook_id}-identify",
    }
    properties: dict[str, Any] = {
        "audience_key": info.segment_key,
        info.segment_key: member,
        "transition_id": info.transition_id,
        "sequence": info.sequence,
        "reason": info.reason,
        "crmhub_contact_id": info.contact_id,
    }
    if left_out:
        properties["traits_left_out"] = left_out
    track = {
        **ids,
        "event": ENTERED if member else EXITED,
        "properties": properties,
        "context": {"personas": personas, "traits": traits},
        "timestamp": info.occurred_at,
        "message_id": f"{job.webhook_id}-track",
    }
    return identify, track


class SegmentioSender:
    """Blocking `segment-analytics-python` calls, run off the event loop; our queue does the retrying."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        write_key: str,
        *,
        client: Client | None = None,
        perf_counter: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._endpoint = endpoint
        # sync_mode: one POST per call that raises on failure, so the outcome is ours to record and retry.
        self._client = client or Client(
            write_key, host=endpoint.url, sync_mode=True, timeout=endpoint.timeout_seconds, max_retries=0
        )
        self._policy = AddressPolicy(endpoint.allow_private_network, endpoint.networks)
        self._perf_counter = perf_counter

    async def send(self, job: Job, body: dict[str, Any], now: datetime) -> Attempt:
        """Identify, then track; either failing fails the attempt and both are resent with the same ids."""
        host = urlsplit(self._endpoint.url).hostname or ""
        reason = await asyncio.to_thread(self._refused, host)
        if reason:
            return Attempt(job, now, None, 0.0, reason, refused=True)
        identify, track = segmentio_messages(job, body)
        started = self._perf_counter()
        try:
            await asyncio.to_thread(self._client.identify, **identify)
            await asyncio.to_thread(self._client.track, **track)
        except APIError as exc:
            return Attempt(job, now, int(exc.status), self._ms(started), str(exc), None, _retry_after(exc))
        except requests.Timeout:
            return Attempt(
                job, now, None, self._ms(started), f"timed out after {self._endpoint.timeout_seconds} s"
            )
        except requests.RequestException as exc:
            return Attempt(job, now, None, self._ms(started), f"{type(exc).__name__}: {exc}")
        except (RuntimeError, AssertionError) as exc:
            # The library's own checks, before sending: resending the same message cannot pass them.
            # Its text after the first argument is the whole message (the person's traits): left out.
            said = str(exc.args[0])[:120] if exc.args else type(exc).__name__
            return Attempt(
                job, now, None, self._ms(started), f"the Segment.com library refused it: {said}", refused=True
            )
        return Attempt(job, now, 200, self._ms(started))

    def _refused(self, host: str) -> str | None:
        # requests resolves again when it connects; this check narrows, not closes, the rebinding window.
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
        except OSError:
            return None  # the request fails the same way and is retried on the schedule
        reasons = [r for r in (refusal(str(a).split("%", 1)[0], self._policy) for a in addresses) if r]
        return f"refused to connect to {host}: {'; '.join(reasons)}" if reasons else None

    def _ms(self, started: float) -> float:
        return (self._perf_counter() - started) * 1000

    async def aclose(self) -> None:
        """Nothing is queued in blocking mode; nothing to flush."""


def _retry_after(exc: APIError) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get("Retry-After") if headers is not None else None
