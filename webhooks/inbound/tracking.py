"""The Segment.com HTTP Tracking API (`/v1/batch`, `/v1/track`, ...) as crmhub accepts it.

What `segment-analytics-python` sends: `POST {host}/v1/batch`, `Authorization: Basic
base64(writeKey + ":")`, the write key again as `writeKey` in the body, `sentAt`, the body gzipped
when the client is built with `gzip=True`. Segment.com's limits and answers: 32 KB per message,
500 KB per request, 400 beyond; errors as `{"success": false, "code", "message"}`, which the
library turns into its `APIError(status, code, message)`.

A `/v1/batch` is refused whole only when it cannot be read (JSON, gzip, size, write key). A message
in it that cannot be used (an unknown `type`, no userId) is left out and named under `ignored` in
the 200 answer, the others stored: the libraries never retry a 400, so refusing would lose them.
A single-message call (`/v1/track`, ...) with such a message is still a 400.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from connectors import MAX_BATCH_BYTES, InvalidMessageError, check_size, parse_batch
from connectors.segmentio import parse_messages
from webhooks.inbound.events import Parsed, load_json, message_ids
from webhooks.inbound.request import InboundError, InboundRequest, InboundResponse

__all__ = ["TRACKING_KINDS", "SegmentioApiError", "TrackingKind", "parse_tracking"]

log = logging.getLogger(__name__)

TrackingKind = Literal["batch", "track", "identify", "page", "screen", "group", "alias"]
TRACKING_KINDS: tuple[TrackingKind, ...] = ("batch", "track", "identify", "page", "screen", "group", "alias")


class SegmentioApiError(InboundError):
    """A refusal in Segment.com's own error shape."""

    def response(self) -> InboundResponse:
        """`{"success": false, "code": ..., "message": ...}`."""
        body = {"success": False, "code": self.code, "message": self.message}
        return InboundResponse(self.status, body, self.headers)


def _basic_user(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None


def _check_key(given: Any, expected: str) -> None:
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise SegmentioApiError(
            401,
            "invalid_write_key",
            "segmentio: the write key is missing or wrong: send it as the HTTP Basic user name "
            "(empty password), the value of the variable connectors.segmentio.write_key_env names",
        )


def _gunzip(raw: bytes) -> bytes:
    """The decompressed body, never more than the batch limit plus one byte (a gzip bomb stops there)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    except zlib.error as exc:
        raise SegmentioApiError(
            400, "invalid_gzip", f"segmentio: invalid gzip body ({exc}): resend it"
        ) from None
    if not inflater.eof and not inflater.unconsumed_tail:
        raise SegmentioApiError(400, "invalid_gzip", "segmentio: the gzip body is truncated: resend it")
    return out


def _size(raw: bytes, *, batch: bool) -> None:
    try:
        check_size(raw, batch=batch)
    except InvalidMessageError as exc:
        raise SegmentioApiError(400, "payload_too_large", str(exc)) from None


def parse_tracking(kind: TrackingKind, request: InboundRequest, write_key: str, *, now: datetime) -> Parsed:
    """Authenticate, size-check and parse one Tracking API request; SegmentioApiError when refused."""
    authorization = request.headers.get("authorization")
    if authorization:
        _check_key(_basic_user(authorization), write_key)
    raw = request.body
    if request.headers.get("content-encoding", "").strip().lower() == "gzip":
        raw = _gunzip(raw)
    _size(raw, batch=kind == "batch")
    try:
        body = load_json("segmentio", raw)
    except InboundError as exc:
        raise SegmentioApiError(400, "invalid_json", exc.message) from None
    if not isinstance(body, Mapping):
        raise SegmentioApiError(400, "invalid_json", "segmentio: expected a JSON object: send one message")
    if not authorization:
        _check_key(body.get("writeKey"), write_key)
    skipped: list[str] = []
    try:
        if kind == "batch":
            messages = body.get("batch")
            for message in messages if isinstance(messages, list) else []:
                # Measured as the library measures it before sending (json.dumps, default separators).
                _size(json.dumps(message).encode(), batch=False)
            parsed = parse_batch(body, received_at=now)
            batch, skipped = parsed.batch, parsed.skipped
        else:
            message = {k: v for k, v in body.items() if k != "writeKey"}
            batch = parse_messages([{**message, "type": kind}], received_at=now)
    except InvalidMessageError as exc:
        raise SegmentioApiError(400, "invalid_message", str(exc)) from None
    if skipped:
        log.warning("segmentio: /v1/batch: %d message(s) left out: %s", len(skipped), "; ".join(skipped))
    return Parsed(batch, message_ids(batch), ignored=skipped)
