"""Building one sender per configured endpoint, with its secrets read from the environment."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from webhooks.config import WebhooksConfig
from webhooks.exceptions import SecretError
from webhooks.segmentio_destination import SegmentioSender
from webhooks.sender import Sender, WebhookSender, webhook_client
from webhooks.signing import load_keys

__all__ = ["build_senders"]


def build_senders(
    config: WebhooksConfig,
    environ: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Sender]:
    """A sender per endpoint; `transport` replaces the guarded network transport (tests, benchmarks)."""
    senders: dict[str, Sender] = {}
    for name, endpoint in config.endpoints.items():
        where = f"webhooks.endpoints.{name}"
        if endpoint.kind == "segmentio":
            env = endpoint.write_key_env or ""
            key = environ.get(env)
            if not key:
                raise SecretError(f"{where}.write_key_env: environment variable {env} is unset: set it")
            senders[name] = SegmentioSender(endpoint, key)
        else:
            keys = load_keys(endpoint.secret_envs, environ, where=f"{where}.secret_envs")
            senders[name] = WebhookSender(endpoint, keys, webhook_client(endpoint, transport))
    return senders
