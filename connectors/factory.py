"""Builds a Source by name from the connectors config, an injected HTTP client, sleep and clock."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from connectors.base import Source
from connectors.config import ConnectorsConfig
from connectors.exceptions import PermanentError
from connectors.http import Retrier
from connectors.hubspot import HubSpotSource
from connectors.stripe import StripeSource
from connectors.typeform import TypeformSource

__all__ = ["PULL_SOURCES", "build_source", "default_http_client"]

# Sources we pull from; `segmentio` pushes to us (see connectors.segmentio).
PULL_SOURCES = ("stripe", "hubspot", "typeform")


def build_source(
    name: str,
    config: ConnectorsConfig,
    secret: SecretStr | str,
    http: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Source:
    """The Source called `name`; `http` carries transport and timeouts, `sleep`/`clock` drive waiting.

    Build one per run: HubSpot property and Typeform form definitions are cached on the Source.
    """
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not key:
        raise PermanentError(f"{name}: no API key: set the variable named by connectors.{name}.api_key_env")
    retrier = Retrier(max_attempts=config.max_attempts, sleep=sleep)
    if name == "stripe":
        return StripeSource(config.stripe, key, http, retrier, clock=clock)
    if name == "hubspot":
        return HubSpotSource(config.hubspot, key, http, retrier, clock=clock)
    if name == "typeform":
        return TypeformSource(config.typeform, key, http, retrier, clock=clock)
    raise PermanentError(f"{name}: not a source crmhub pulls from: use one of {', '.join(PULL_SOURCES)}")


def default_http_client(config: ConnectorsConfig) -> httpx.Client:
    """An httpx client with the configured timeout, for callers that have none of their own."""
    return httpx.Client(timeout=config.timeout_seconds)
