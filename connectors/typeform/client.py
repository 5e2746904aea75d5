"""The `typeform` package with its transport replaced: our httpx client, real statuses, throttling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import typeform.client
from typeform.forms import Forms
from typeform.responses import Responses
from typeform.utils import buildUrlWithParams

from connectors.exceptions import MalformedPageError
from connectors.http import Retrier, error_for_status, error_for_transport, parse_retry_after
from connectors.ratelimit import TokenBucket

__all__ = ["TypeformApi"]


class _HttpxTypeformClient(typeform.client.Client):  # type: ignore[misc]
    """The package's Client with `request` sent through httpx to our base URL.

    The package builds paths and parameters well but sends them with a module-level
    `requests.request` (no timeout) and turns every error into a bare Exception without its status.
    Overriding the one method both `Forms` and `Responses` call keeps its API and fixes the transport,
    with no module global patched (so two sources with different base URLs can coexist).
    """

    def __init__(self, token: str, base_url: str, http: httpx.Client, bucket: TokenBucket) -> None:
        super().__init__(token)
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._http = http
        self._bucket = bucket

    def request(
        self, method: str, url: str, data: Any = None, params: Any = None, headers: Any = None
    ) -> Mapping[str, Any]:
        full_url = buildUrlWithParams(self._base_url + url, params or {})
        self._bucket.acquire()
        try:
            response = self._http.request(
                method.upper(),
                full_url,
                headers={"Authorization": f"bearer {self._token}", "Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise error_for_transport("typeform", exc, what=url) from exc
        if response.status_code >= 400:
            raise error_for_status(
                "typeform",
                response.status_code,
                what=url,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                detail=_description(response),
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            raise MalformedPageError(
                f"typeform: {url}: malformed page: the body is not a JSON object: "
                "check connectors.typeform.base_url points at the Typeform API"
            )
        return body


def _description(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    text = body.get("description") or body.get("code") if isinstance(body, Mapping) else None
    return str(text)[:200] if text else ""


class TypeformApi:
    """Responses and form definitions through the `typeform` package, with our retries."""

    def __init__(
        self, token: str, base_url: str, http: httpx.Client, retrier: Retrier, bucket: TokenBucket
    ) -> None:
        self.retrier = retrier
        client = _HttpxTypeformClient(token, base_url, http, bucket)
        self._forms = Forms(client)
        self._responses = Responses(client)

    def responses(self, form_id: str, **params: Any) -> Mapping[str, Any]:
        """One page of `GET /forms/{form_id}/responses` (parameters in the package's spelling)."""
        result: Mapping[str, Any] = self.retrier.call(lambda: self._responses.list(form_id, **params))
        return result

    def form(self, form_id: str) -> Mapping[str, Any]:
        """`GET /forms/{form_id}`: the form definition."""
        result: Mapping[str, Any] = self.retrier.call(lambda: self._forms.get(form_id))
        return result
