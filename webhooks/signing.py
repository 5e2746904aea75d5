"""Standard Webhooks v1 signing: `whsec_` secrets, HMAC-SHA256 over `id.timestamp.body`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from webhooks.exceptions import SecretError

__all__ = [
    "SECRET_PREFIX",
    "SignatureError",
    "decode_secret",
    "generate_secret",
    "load_keys",
    "sign",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
# How far a signed request's timestamp may lie from our clock, either way (the spec's suggestion).
TOLERANCE_SECONDS = 300
_MIN_BYTES, _MAX_BYTES = 24, 64


def generate_secret(size: int = 32) -> str:
    """A new `whsec_` secret of `size` random bytes (24-64), standard base64 as the libraries expect."""
    if not _MIN_BYTES <= size <= _MAX_BYTES:
        raise ValueError(f"secret size must be {_MIN_BYTES}-{_MAX_BYTES} bytes, got {size}")
    return SECRET_PREFIX + base64.b64encode(os.urandom(size)).decode("ascii")


def decode_secret(secret: str, *, name: str = "secret") -> bytes:
    """The HMAC key of a `whsec_` secret: the base64-decoded bytes, never the text itself."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise SecretError(f"{name}: expected a secret starting with whsec_: run `crmhub webhooks new-secret`")
    try:
        # Standard alphabet only: consumers' libraries reject or misread URL-safe base64.
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"{name}: not valid standard base64 after whsec_: generate a new secret") from None
    if not _MIN_BYTES <= len(key) <= _MAX_BYTES:
        raise SecretError(
            f"{name}: {len(key)} bytes, expected {_MIN_BYTES}-{_MAX_BYTES}: generate a new secret"
        )
    return key


def load_keys(envs: Sequence[str], environ: Mapping[str, str], *, where: str) -> list[bytes]:
    """Read and decode the secrets named by `envs` (current first, then still-valid old ones)."""
    keys: list[bytes] = []
    for env in envs:
        value = environ.get(env)
        if not value:
            raise SecretError(f"{where}: environment variable {env} is unset: set it to a whsec_ secret")
        keys.append(decode_secret(value, name=f"{where} ({env})"))
    return keys


def sign(webhook_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per key, single-space separated."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )


def signed_headers(webhook_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(webhook_id, timestamp, body, keys),
    }


class SignatureError(Exception):
    """A signed request that does not verify: the message says which check failed and what to do."""


def verify(headers: Mapping[str, str], body: bytes, keys: Sequence[bytes], *, now: float) -> None:
    """Check Standard Webhooks headers (lower-case names) against `keys`; raise SignatureError if not."""
    webhook_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not (webhook_id and stamp and given):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    # ASCII only: str.isdigit accepts "¹", which int() then refuses.
    if not (stamp.isascii() and stamp.isdigit()) or abs(now - int(stamp)) > TOLERANCE_SECONDS:
        raise SignatureError(
            f"webhook-timestamp {stamp[:20]!r} is more than {TOLERANCE_SECONDS} s from our clock: "
            "sign with the current time, and check the sender's clock"
        )
    expected = sign(webhook_id, int(stamp), body, keys).split(" ")
    offered = [part for part in given.split(" ") if part.startswith("v1,")]
    # Bytes: compare_digest raises TypeError on a str with non-ASCII characters.
    if not any(hmac.compare_digest(a.encode(), b.encode()) for a in offered for b in expected):
        raise SignatureError("no v1 signature matches: sign id.timestamp.body with the endpoint's secret")
