"""Webhooks: outbound delivery, inbound provider webhooks, the Segment.com destination."""

from sync.store import write_transaction
from webhooks.config import Cap, EndpointConfig, WebhooksConfig, parse_cap
from webhooks.exceptions import SecretError, UnsafeDestinationError, WebhookConfigError, WebhookError
from webhooks.fanout import FanoutStats, fan_out
from webhooks.retry import MAX_ATTEMPTS, SCHEDULE, Dead, Disable, RetryDecision, Succeeded, classify, decide
from webhooks.senders import build_senders
from webhooks.signing import decode_secret, generate_secret, sign, signed_headers
from webhooks.ssrf import AddressPolicy, guarded_transport, refusal
from webhooks.worker import DeliveryWorker, RunStats

__all__ = [
    "MAX_ATTEMPTS",
    "SCHEDULE",
    "AddressPolicy",
    "Cap",
    "Dead",
    "DeliveryWorker",
    "Disable",
    "EndpointConfig",
    "FanoutStats",
    "RetryDecision",
    "RunStats",
    "SecretError",
    "Succeeded",
    "UnsafeDestinationError",
    "WebhookConfigError",
    "WebhookError",
    "WebhooksConfig",
    "build_senders",
    "classify",
    "decide",
    "decode_secret",
    "fan_out",
    "generate_secret",
    "guarded_transport",
    "parse_cap",
    "refusal",
    "sign",
    "signed_headers",
    "write_transaction",
]
