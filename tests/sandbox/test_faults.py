"""Faults: parsing, counts, seeded rates, dropped connections, latency, and the control endpoint."""

from __future__ import annotations

import httpx
import pytest

from crmhub.sandbox import Fault, FaultSpecError, Sandbox, credentials, parse_fault
from crmhub.sandbox.faults import Faults

STRIPE_AUTH = {"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("stripe:429:0.2", Fault("stripe", "429", rate=0.2)),
        ("hubspot:503:3", Fault("hubspot", "503", count=3)),
        ("typeform:drop", Fault("typeform", "drop")),
        ("segmentio:latency=250:0.5", Fault("segmentio", "latency", rate=0.5, latency_ms=250)),
        ("receiver:410:1", Fault("receiver", "410", count=1)),
    ],
)
def test_parse(spec: str, expected: Fault) -> None:
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    "spec", ["stripe", "paypal:429", "stripe:teapot", "stripe:429:1.5", "stripe:429:x", "stripe:200"]
)
def test_parse_rejects(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_fault(spec)


def test_rates_are_deterministic_for_a_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        faults = Faults(seed)
        faults.add(parse_fault("stripe:500:0.3"))
        return [faults.draw("stripe") is not None for _ in range(200)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    assert 30 < sum(pattern(1)) < 90


def test_counted_faults_are_used_up_and_other_apis_untouched() -> None:
    faults = Faults()
    faults.add(parse_fault("hubspot:502:2"))
    assert faults.draw("stripe") is None
    assert [faults.draw("hubspot") is not None for _ in range(3)] == [True, True, False]
    assert faults.active() == []


def test_server_error_has_the_provider_body(url: str, sandbox: Sandbox) -> None:
    sandbox.add_fault("stripe:500:1")
    answer = httpx.get(f"{url}/v1/customers", headers=STRIPE_AUTH)
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "api_error"


def test_drop_closes_the_connection_without_an_answer(url: str, sandbox: Sandbox) -> None:
    sandbox.add_fault("stripe:drop:1")
    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{url}/v1/customers", headers=STRIPE_AUTH)
        assert client.get(f"{url}/v1/customers", headers=STRIPE_AUTH).status_code == 200


def test_latency_delays_then_answers(url: str, sandbox: Sandbox) -> None:
    sandbox.add_fault("stripe:latency=300:1")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{url}/v1/customers", headers=STRIPE_AUTH, timeout=0.05)
    assert httpx.get(f"{url}/v1/customers", headers=STRIPE_AUTH).status_code == 200


def test_control_endpoint(url: str) -> None:
    added = httpx.post(f"{url}/_sandbox/faults", json={"specs": ["stripe:429:2", "hubspot:503:0.5"]}).json()
    assert [f["api"] for f in added["faults"]] == ["stripe", "hubspot"]
    first = httpx.get(f"{url}/v1/customers", headers=STRIPE_AUTH)
    assert first.status_code == 429 and first.headers["retry-after"] == "1"
    assert first.json()["error"]["code"] == "rate_limit"
    assert (
        httpx.delete(f"{url}/_sandbox/faults", params={"api": "stripe"}).json()["faults"][0]["api"]
        == "hubspot"
    )
    assert httpx.get(f"{url}/v1/customers", headers=STRIPE_AUTH).status_code == 200
    assert httpx.delete(f"{url}/_sandbox/faults").json() == {"faults": []}
    bad = httpx.post(f"{url}/_sandbox/faults", json={"spec": "stripe:nope"})
    assert bad.status_code == 400
