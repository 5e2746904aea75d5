"""Runs the HubSpot SDK's generated clients over our injected httpx client instead of urllib3."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from hubspot.discovery.discovery_base import DiscoveryBase

__all__ = ["HttpxPoolManager", "httpx_api_factory"]


class _Response:
    """The part of `urllib3.HTTPResponse` the generated `rest.py` and `ApiException` read."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.reason = response.reason_phrase
        self.data = response.content
        self.headers = response.headers

    def getheaders(self) -> Mapping[str, str]:
        return self._response.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        value: str | None = self._response.headers.get(name, default)
        return value


class HttpxPoolManager:
    """Stands in for `urllib3.PoolManager` in each generated `RESTClientObject`.

    The generated code calls `request(method, url, fields=..., body=..., headers=...)`: query
    parameters arrive as `fields` on GET, JSON bodies as an already-encoded string.
    """

    def __init__(self, http: httpx.Client, before_request: Callable[[str, str], None] | None = None) -> None:
        self._http = http
        self._before_request = before_request

    def request(
        self,
        method: str,
        url: str,
        body: str | bytes | None = None,
        fields: Sequence[tuple[str, Any]] | Mapping[str, Any] | None = None,
        preload_content: bool = True,
        timeout: Any = None,
        headers: Mapping[str, str] | None = None,
        encode_multipart: bool = False,
    ) -> _Response:
        if self._before_request is not None:
            self._before_request(method, url)
        params = None
        if fields and method in ("GET", "HEAD", "DELETE"):
            params = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        # Timeouts come from `http` (connectors.timeout_seconds), not from per-call SDK arguments.
        response = self._http.request(method, url, params=params, content=body, headers=dict(headers or {}))
        return _Response(response)


def httpx_api_factory(pool: HttpxPoolManager) -> Callable[[Any, str, dict[str, Any]], Any]:
    """An `api_factory` for `hubspot.HubSpot` that builds the SDK's API objects on `pool`."""

    def factory(api_client_package: Any, api_name: str, config: dict[str, Any]) -> Any:
        api = DiscoveryBase._default_api_factory(api_client_package, api_name, config)
        api.api_client.rest_client.pool_manager = pool
        return api

    return factory
