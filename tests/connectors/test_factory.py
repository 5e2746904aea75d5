"""build_source: names, secrets, and the layer rule."""

from __future__ import annotations

import ast
import pathlib

import httpx
import pytest
from pydantic import SecretStr

import connectors
from connectors import (
    ConnectorsConfig,
    HubSpotSource,
    PermanentError,
    StripeSource,
    TypeformSource,
    build_source,
)


@pytest.fixture
def http() -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500)))


def test_builds_each_pull_source(http: httpx.Client) -> None:
    config = ConnectorsConfig.model_validate({"hubspot": {"objects": ["contacts", "deals"]}})
    assert isinstance(build_source("stripe", config, SecretStr("sk"), http), StripeSource)
    hubspot = build_source("hubspot", config, "pat", http)
    assert isinstance(hubspot, HubSpotSource)
    assert [s.qualified_name for s in hubspot.streams] == ["hubspot.contacts", "hubspot.deals"]
    assert [s.cursor_field for s in hubspot.streams] == ["lastmodifieddate", "hs_lastmodifieddate"]
    assert isinstance(build_source("typeform", config, "tfp", http), TypeformSource)
    stripe = build_source("stripe", config, "sk", http)
    assert [s.name for s in stripe.streams] == ["customers", "subscriptions", "invoices", "charges"]
    with pytest.raises(PermanentError, match=r"no stream 'refunds': use one of customers"):
        stripe.stream("refunds")


def test_unknown_source_and_empty_secret(http: httpx.Client) -> None:
    with pytest.raises(PermanentError, match=r"segmentio: not a source crmhub pulls from"):
        build_source("segmentio", ConnectorsConfig(), "x", http)
    with pytest.raises(
        PermanentError, match=r"stripe: no API key: set the variable named by connectors.stripe"
    ):
        build_source("stripe", ConnectorsConfig(), SecretStr(""), http)


def test_connectors_imports_nothing_of_ours() -> None:
    ours = {"field_mapping", "sync", "webhooks", "crmhub"}
    for path in pathlib.Path(connectors.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & ours, path
