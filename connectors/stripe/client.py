"""The Stripe SDK on our injected httpx client, with our retries and error messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import stripe

from connectors.exceptions import MalformedPageError
from connectors.http import Retrier, error_for_status, error_for_transport, parse_retry_after
from connectors.ratelimit import TokenBucket

__all__ = ["API_VERSION", "StripeApi"]

# The API version every request is made at: the one the SDK pins (it sends Stripe-Version).
API_VERSION: str = stripe.api_version


def _httpx_client(http: httpx.Client) -> Any:
    """A `stripe.HTTPXClient` whose sync requests go through `http` (our transport, timeouts, respx)."""
    # timeout=None keeps the SDK from overriding the timeouts configured on `http`.
    sdk_http = stripe.HTTPXClient(timeout=None, allow_sync_methods=True)
    # The SDK builds its own httpx.Client and offers no parameter for ours; `_client` is the one
    # attribute its sync `request` uses (stripe 16.1 `_http_client.py`), so we swap it and close theirs.
    if sdk_http._client is not None:
        sdk_http._client.close()
    sdk_http._client = http
    return sdk_http


class StripeApi:
    """GETs against the Stripe API through `StripeClient.raw_request`, returning plain JSON objects."""

    def __init__(
        self, api_key: str, base_url: str, http: httpx.Client, retrier: Retrier, bucket: TokenBucket
    ) -> None:
        self.retrier = retrier
        self._bucket = bucket
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base_url.rstrip("/")},
            http_client=_httpx_client(http),
            # Retries are ours: the SDK ignores Retry-After and does not retry 429.
            max_network_retries=0,
        )

    def get(self, path: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """One GET with retries; the parsed JSON object, or a ConnectorError naming the cause."""
        return self.retrier.call(lambda: self._get_once(path, params))

    def _get_once(self, path: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        self._bucket.acquire()  # every attempt, retries too, counts against Stripe's limit
        try:
            # raw_request keeps the SDK's auth, API version, parameter encoding and error parsing,
            # but skips building StripeObjects we would only turn back into dicts.
            response = self._client.raw_request("get", path, **params)
        except stripe.APIConnectionError as exc:
            raise error_for_transport("stripe", exc.__cause__ or exc, what=path) from exc
        except stripe.StripeError as exc:
            status = exc.http_status
            if status is None:
                raise error_for_transport("stripe", exc.__cause__ or exc, what=path) from exc
            if 200 <= status < 300:
                raise MalformedPageError(
                    f"stripe: {path}: malformed page: the body is not JSON: "
                    "check connectors.stripe.base_url points at the Stripe API"
                ) from exc
            headers = exc.headers or {}
            raise error_for_status(
                "stripe",
                status,
                what=path,
                retry_after=parse_retry_after(headers.get("retry-after") or headers.get("Retry-After")),
                detail=(exc.user_message or "")[:200],
                # The SDK's RateLimitError is a 429 or a 400 with `error.code = "rate_limit"`, and
                # leaves `exc.code` unset for both, so its class is the one sign to go by.
                rate_limited=isinstance(exc, stripe.RateLimitError),
            ) from exc
        data = response.data
        if not isinstance(data, Mapping):
            raise MalformedPageError(
                f"stripe: {path}: malformed page: expected a JSON object: check connectors.stripe.base_url"
            )
        return data
