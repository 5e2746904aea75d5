"""The Segment.com HTTP Tracking API look-alike: `/v1/batch` and the single-message calls, recorded.

The write key comes as Basic auth (`base64(writeKey + ":")`) or as `writeKey` in the body. A wrong
key is answered 401 so that a misconfigured destination shows up in tests; real Segment.com is more
forgiving. Limits are Segment.com's: 32 KB per message, 500 KB per request, 400 beyond.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from crmhub.sandbox import credentials
from crmhub.sandbox.asgi import Request, Response, Router, json_response
from crmhub.sandbox.world import World

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
_SINGLE = ("identify", "track", "page", "screen", "group", "alias")


def _write_key(request: Request, body: dict[str, Any]) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
    key = body.get("writeKey")
    return key if isinstance(key, str) else None


def _error(status: int, message: str) -> Response:
    return json_response(status, {"success": False, "message": message})


class SegmentioApi:
    """The collector, bound to one `World` whose `segmentio_received` it appends to."""

    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        """Add the collector routes to `router`."""
        router.add("POST", "/v1/batch", self.collect)
        for kind in _SINGLE:
            router.add("POST", f"/v1/{kind}", self.collect)

    def collect(self, request: Request) -> Response:
        """Check size, key and shape, then record every message."""
        raw = request.body
        if request.headers.get("content-encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return _error(400, "Invalid gzip body")
        if len(raw) > MAX_BATCH_BYTES:
            return _error(400, f"Request body is larger than {MAX_BATCH_BYTES} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "Invalid JSON")
        if not isinstance(body, dict):
            return _error(400, "Expected a JSON object")
        if _write_key(request, body) != credentials.SEGMENT_WRITE_KEY:
            return _error(401, "Invalid write key")
        kind = request.path.rsplit("/", 1)[-1]
        messages = body.get("batch") if kind == "batch" else [body | {"type": body.get("type", kind)}]
        if not isinstance(messages, list):
            return _error(400, "batch must be an array of messages")
        for message in messages:
            if not isinstance(message, dict):
                return _error(400, "Every message must be an object")
            if len(json.dumps(message).encode()) > MAX_MESSAGE_BYTES:
                return _error(400, f"A message is larger than {MAX_MESSAGE_BYTES} bytes")
            if not message.get("userId") and not message.get("anonymousId"):
                return _error(400, "Every message needs a userId or an anonymousId")
        received_at = self.world.now
        for message in messages:
            self.world.segmentio_received.append(
                {
                    "path": request.path,
                    "sentAt": body.get("sentAt"),
                    "receivedAt": received_at,
                    "message": message,
                }
            )
        return json_response(200, {"success": True})
