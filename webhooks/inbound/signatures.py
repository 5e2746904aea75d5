"""Signature checks of provider webhooks, on the raw body, in constant time; failures raise 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

import stripe
from hubspot.utils.signature import Signature

from webhooks.inbound.request import InboundError, InboundRequest

__all__ = ["verify_hubspot", "verify_segmentio", "verify_stripe", "verify_typeform"]

# HubSpot signs the v3 URI with these characters decoded (its "validating requests" guide).
_HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def _refuse(provider: str, cause: str, fix: str) -> InboundError:
    return InboundError(401, "invalid_signature", f"{provider}: {cause}: {fix}")


def _secret_fix(provider: str, key: str) -> str:
    return f"check that webhooks.inbound.{provider}.{key} names the secret {provider} signs with"


def _stripe_parts(header: str) -> tuple[int, list[str]]:
    """The one `t` and the `v1` signatures of a Stripe-Signature header, keyed as the SDK keys them."""
    items = [item.split("=", 1) for item in header.split(",")]
    stamps = [item[1] for item in items if len(item) == 2 and item[0] == "t"]
    signatures = [item[1] for item in items if len(item) == 2 and item[0] == "v1"]
    # Several `t`s would let the signature be checked on one and the age on another (a replay).
    # Non-ASCII would reach the SDK's compare_digest on str, which raises TypeError.
    if not header.isascii() or len(stamps) != 1 or not _ascii_digits(stamps[0]) or not signatures:
        raise _refuse(
            "stripe",
            "the Stripe-Signature header needs exactly one t=<epoch seconds> and a v1=<signature>",
            "send the header unchanged",
        )
    return int(stamps[0]), signatures


def _ascii_digits(text: str) -> bool:
    # str.isdigit also accepts "²" and other digits int() refuses or reads differently.
    return text.isascii() and text.isdigit()


def verify_stripe(request: InboundRequest, secret: str, *, tolerance: int, now: datetime) -> None:
    """`Stripe-Signature` (`t=...,v1=...`) checked by the stripe SDK; an old timestamp is a replay."""
    header = request.headers.get("stripe-signature")
    if not header:
        raise _refuse("stripe", "the Stripe-Signature header is missing", "send the request from Stripe")
    timestamp, signatures = _stripe_parts(header)
    # The SDK gets the header rebuilt from what was parsed, so it checks the timestamp aged below.
    canonical = ",".join([f"t={timestamp}", *(f"v1={s}" for s in signatures)])
    try:
        # Tolerance is checked below against `now`: the SDK would read the machine's clock.
        stripe.WebhookSignature.verify_header(request.body, canonical, secret, tolerance=None)
    except UnicodeDecodeError:
        raise _refuse("stripe", "the body is not UTF-8", "send the event body unchanged") from None
    except stripe.SignatureVerificationError as exc:
        raise _refuse(
            "stripe", f"signature check failed ({exc})", _secret_fix("stripe", "secret_env")
        ) from None
    age = now.timestamp() - timestamp
    if age > tolerance:
        raise _refuse(
            "stripe",
            f"the signed timestamp is {int(age)} s old, over the {tolerance} s tolerance (a replay?)",
            "let Stripe retry with a fresh signature, and check this machine's clock",
        )


def _hubspot_uris(url: str) -> list[str]:
    decoded = url
    for encoded, char in _HUBSPOT_DECODED.items():
        decoded = decoded.replace(encoded, char).replace(encoded.lower(), char)
    return [url] if decoded == url else [url, decoded]


def verify_hubspot(request: InboundRequest, secret: str, *, tolerance: int, now: datetime) -> None:
    """`X-HubSpot-Signature-v3` over method + URI + body + timestamp (ms), refused when stale."""
    signature = request.headers.get("x-hubspot-signature-v3")
    timestamp = request.headers.get("x-hubspot-request-timestamp", "")
    if not signature or not timestamp:
        raise _refuse(
            "hubspot",
            "the X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp header is missing",
            "send the request from a HubSpot app's webhook subscription",
        )
    if not _ascii_digits(timestamp):
        raise _refuse(
            "hubspot",
            f"X-HubSpot-Request-Timestamp {timestamp[:20]!r} is not epoch milliseconds",
            "send it unchanged",
        )
    age = now.timestamp() - int(timestamp) / 1000
    if age > tolerance:
        raise _refuse(
            "hubspot",
            f"the request timestamp is {int(age)} s old, over the {tolerance} s tolerance (a replay?)",
            "let HubSpot retry with a fresh signature, and check this machine's clock",
        )
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("hubspot", "the body is not UTF-8", "send the events unchanged") from None
    # The URI must be the public one HubSpot called; behind a proxy the server rebuilds it.
    matches = [
        # Bytes: compare_digest raises TypeError on a str with non-ASCII characters.
        hmac.compare_digest(
            Signature.get_signature(secret, body, "v3", uri, request.method.upper(), timestamp).encode(),
            signature.encode(),
        )
        for uri in _hubspot_uris(request.url)
    ]
    if not any(matches):
        raise _refuse(
            "hubspot",
            f"signature check failed for {request.method.upper()} {request.url}",
            _secret_fix("hubspot", "client_secret_env") + ", and that the URL is the one HubSpot calls",
        )


def verify_typeform(request: InboundRequest, secret: str) -> None:
    """`Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>`."""
    header = request.headers.get("typeform-signature")
    if not header:
        raise _refuse(
            "typeform", "the Typeform-Signature header is missing", "set a secret on the form's webhook"
        )
    digest = hmac.new(secret.encode(), request.body, hashlib.sha256).digest()
    expected = "sha256=" + base64.b64encode(digest).decode()
    if not hmac.compare_digest(expected.encode(), header.strip().encode()):
        raise _refuse("typeform", "signature check failed", _secret_fix("typeform", "secret_env"))


def verify_segmentio(request: InboundRequest, secret: str) -> None:
    """`X-Signature`: hex HMAC-SHA1 of the body with the destination's shared secret."""
    header = request.headers.get("x-signature")
    if not header:
        raise _refuse(
            "segmentio",
            "the X-Signature header is missing",
            "set a shared secret on the Webhooks destination",
        )
    expected = hmac.new(secret.encode(), request.body, hashlib.sha1).hexdigest()
    if not hmac.compare_digest(expected.encode(), header.strip().lower().encode()):
        raise _refuse("segmentio", "signature check failed", _secret_fix("segmentio", "shared_secret_env"))
