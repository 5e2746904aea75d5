"""Sending one signed Standard Webhooks request and describing what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import httpx

from webhooks.config import EndpointConfig
from webhooks.payload import MAX_BODY_BYTES, encode_body
from webhooks.queue import Job
from webhooks.record import EXCERPT_CHARS, Attempt
from webhooks.signing import signed_headers
from webhooks.ssrf import AddressPolicy, RefusedAddressError, guarded_transport

__all__ = ["Sender", "WebhookSender", "webhook_client"]

USER_AGENT = "crmhub-webhooks/1"


class Sender(Protocol):
    """Sends one job's payload to one endpoint and reports the attempt; never raises for HTTP trouble."""

    async def send(self, job: Job, body: dict[str, Any], now: datetime) -> Attempt:
        """Attempt delivery of `body` at `now`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class WebhookSender:
    """POSTs signed JSON to one endpoint through its own (SSRF-guarded) client."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        keys: Sequence[bytes],
        client: httpx.AsyncClient,
        *,
        perf_counter: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._endpoint = endpoint
        self._keys = list(keys)
        self._client = client
        self._perf_counter = perf_counter
        # Parsed once: client.build_request re-parses and merges URL and headers on every call (~70 us).
        self._url = httpx.URL(endpoint.url)
        self._timeout = client.timeout.as_dict()

    async def send(self, job: Job, body: dict[str, Any], now: datetime) -> Attempt:
        """Sign with every active secret, POST without following redirects, keep a short excerpt."""
        content = encode_body(body)
        if len(content) > MAX_BODY_BYTES:
            return Attempt(
                job, now, None, 0.0, f"body is {len(content)} bytes, over {MAX_BODY_BYTES}", refused=True
            )
        headers = signed_headers(job.webhook_id, int(now.timestamp()), content, self._keys)
        headers["user-agent"] = USER_AGENT
        started = self._perf_counter()
        try:
            # One deadline for the whole exchange: a consumer dripping bytes cannot hold a slot forever.
            async with asyncio.timeout(self._endpoint.timeout_seconds):
                return await self._post(job, content, headers, now, started)
        except TimeoutError:
            return self._failed(job, now, started, f"timed out after {self._endpoint.timeout_seconds} s")
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, RefusedAddressError):
                return Attempt(job, now, None, 0.0, str(exc.__cause__), refused=True)
            return self._failed(job, now, started, f"{type(exc).__name__}: {exc}")

    async def _post(
        self, job: Job, content: bytes, headers: dict[str, str], now: datetime, started: float
    ) -> Attempt:
        request = httpx.Request(
            "POST", self._url, content=content, headers=headers, extensions={"timeout": self._timeout}
        )
        response = await self._client.send(request, stream=True, follow_redirects=False)
        try:
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_CHARS:
                    break
        finally:
            await response.aclose()
        return Attempt(
            job,
            now,
            response.status_code,
            (self._perf_counter() - started) * 1000,
            None if response.is_success else f"HTTP {response.status_code}",
            excerpt[:EXCERPT_CHARS].decode("utf-8", "replace") or None,
            response.headers.get("retry-after"),
        )

    def _failed(self, job: Job, now: datetime, started: float, error: str) -> Attempt:
        return Attempt(job, now, None, (self._perf_counter() - started) * 1000, error)

    async def aclose(self) -> None:
        """Close the endpoint's client."""
        await self._client.aclose()


class _NoCookies(httpx.Cookies):
    """A jar that stays empty: every delivery stands alone, whatever `Set-Cookie` a consumer answers."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep nothing (httpx would otherwise parse every answer through urllib: ~30 us a request)."""


class _StatelessClient(httpx.AsyncClient):
    """An AsyncClient whose deliveries carry no cookie from an earlier answer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jar = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        """Always the empty jar."""
        return self._jar

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("webhook clients keep no cookies")


def webhook_client(
    endpoint: EndpointConfig, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The endpoint's own client: SSRF-guarded, pooled to its concurrency, no redirects, no cookies."""
    if transport is None:
        policy = AddressPolicy(endpoint.allow_private_network, endpoint.networks)
        transport = guarded_transport(policy, max_connections=endpoint.concurrency)
    return _StatelessClient(transport=transport, follow_redirects=False, timeout=endpoint.timeout_seconds)
