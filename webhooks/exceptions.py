"""Errors of the webhooks package; each message names the thing, the cause and the fix."""

from __future__ import annotations

__all__ = ["SecretError", "UnsafeDestinationError", "WebhookConfigError", "WebhookError"]


class WebhookError(Exception):
    """Base of the webhooks package's errors."""


class WebhookConfigError(WebhookError):
    """The webhook configuration cannot be used as it is (unknown endpoint, unknown segment, ...)."""


class SecretError(WebhookConfigError):
    """A signing secret is unset or not a `whsec_` secret of 24-64 bytes."""


class UnsafeDestinationError(WebhookError):
    """An endpoint's host resolves to an address the SSRF guard refuses."""
