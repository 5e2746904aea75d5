"""Each provider's signature is checked on the raw body first: a bad one is 401 and stores nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.inbound.conftest import (
    NOW,
    SECRETS,
    FakeHubSpot,
    counts,
    dumps,
    hubspot_request,
    segmentio_request,
    stripe_request,
    typeform_request,
)
from tests.inbound.payloads import hubspot_events, segment_track, stripe_event, typeform_payload
from webhooks import WebhookConfigError
from webhooks.inbound import InboundConfig, InboundReceiver, InboundRequest, Provider

SIGNATURE_HEADER = {
    "stripe": "stripe-signature",
    "hubspot": "x-hubspot-signature-v3",
    "typeform": "typeform-signature",
    "segmentio": "x-signature",
}


def _body(provider: Provider) -> bytes:
    payloads = {
        "stripe": stripe_event(),
        "hubspot": hubspot_events(51),
        "typeform": typeform_payload(),
        "segmentio": segment_track(),
    }
    return dumps(payloads[provider])


def _signed(
    provider: Provider, body: bytes, *, secret: str | None = None, at: datetime = NOW
) -> InboundRequest:
    if provider == "stripe":
        return stripe_request(body, at=at, **({"secret": secret} if secret else {}))
    if provider == "hubspot":
        return hubspot_request(body, at=at, **({"secret": secret} if secret else {}))
    if provider == "typeform":
        return typeform_request(body, **({"secret": secret} if secret else {}))
    return segmentio_request(body, **({"secret": secret} if secret else {}))


def _forged(provider: Provider, body: bytes) -> InboundRequest:
    request = _signed(provider, body)
    header = SIGNATURE_HEADER[provider]
    forged = {
        "stripe": request.headers[header].split(",v1=")[0] + ",v1=" + "0" * 64,
        "hubspot": "A" * 43 + "=",
        "typeform": "sha256=" + "A" * 43 + "=",
        "segmentio": "0" * 40,
    }[provider]
    return replace(request, headers={**request.headers, header: forged})


def _missing(provider: Provider, body: bytes) -> InboundRequest:
    request = _signed(provider, body)
    return replace(
        request, headers={k: v for k, v in request.headers.items() if k != SIGNATURE_HEADER[provider]}
    )


CASES: dict[str, Callable[[Provider, bytes], InboundRequest]] = {
    "forged": _forged,
    "missing header": _missing,
    "wrong secret": lambda p, b: _signed(p, b, secret="not-the-secret"),
    "body changed by one byte": lambda p, b: replace(_signed(p, b), body=b[:-2] + b"1" + b[-1:]),
    "body truncated": lambda p, b: replace(_signed(p, b), body=b[:-1]),
}
PROVIDERS: list[Provider] = ["stripe", "hubspot", "typeform", "segmentio"]


@pytest.fixture
def signed_receiver(make_receiver: Callable[..., InboundReceiver], hubspot: FakeHubSpot) -> InboundReceiver:
    hubspot.add("51", email="ada@example.com", lifecyclestage="customer")
    return make_receiver()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_validly_signed_request_is_stored(
    signed_receiver: InboundReceiver, engine: Engine, provider: Provider
) -> None:
    answer = signed_receiver.receive(provider, _signed(provider, _body(provider)), now=NOW)
    assert answer.status == 200, answer.body
    assert answer.body["duplicate"] is False
    after = counts(engine)
    assert after["inbound_events"] >= 1 and after["contacts"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_signature_is_401_and_stores_nothing(
    signed_receiver: InboundReceiver, engine: Engine, provider: Provider, case: str
) -> None:
    before = counts(engine)
    answer = signed_receiver.receive(provider, CASES[case](provider, _body(provider)), now=NOW)
    assert answer.status == 401, answer.body
    assert answer.body["error"] == "invalid_signature"
    assert answer.body["message"].startswith(f"{provider}: ")
    if case != "missing header":
        # Forgery and a wrong secret look alike to the receiver: the fix names the secret's key.
        assert f"webhooks.inbound.{provider}." in answer.body["message"]
    assert counts(engine) == before


@pytest.mark.parametrize("provider", ["stripe", "hubspot"])
def test_a_replayed_request_with_a_stale_timestamp_is_401(
    signed_receiver: InboundReceiver, engine: Engine, provider: Provider
) -> None:
    stale = _signed(provider, _body(provider), at=NOW - timedelta(seconds=301))
    answer = signed_receiver.receive(provider, stale, now=NOW)
    assert answer.status == 401
    assert "tolerance" in answer.body["message"]
    assert counts(engine)["inbound_events"] == 0
    # Within the tolerance the same request is accepted.
    fresh = _signed(provider, _body(provider), at=NOW - timedelta(seconds=299))
    assert signed_receiver.receive(provider, fresh, now=NOW).status == 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_validly_signed_body_that_is_not_json_is_400(
    signed_receiver: InboundReceiver, engine: Engine, provider: Provider
) -> None:
    answer = signed_receiver.receive(provider, _signed(provider, _body(provider)[:-1]), now=NOW)
    assert answer.status == 400
    assert answer.body["error"] == "malformed_payload"
    assert "not valid JSON" in answer.body["message"]
    assert counts(engine)["inbound_events"] == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_oversized_body_is_413_before_anything_else(
    signed_receiver: InboundReceiver, engine: Engine, provider: Provider
) -> None:
    body = b" " * (1024 * 1024) + _body(provider)
    answer = signed_receiver.receive(provider, _signed(provider, body), now=NOW)
    assert answer.status == 413
    assert f"webhooks.inbound.{provider}.max_body_bytes" in answer.body["message"]
    assert counts(engine)["inbound_events"] == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_not_enabled_is_503_so_it_retries_naming_the_key(
    make_receiver: Callable[..., InboundReceiver], engine: Engine, provider: Provider
) -> None:
    # A 404 would be final: Typeform turns the webhook off, HubSpot and Segment.com do not retry it.
    receiver = make_receiver(InboundConfig())
    answer = receiver.receive(provider, _signed(provider, _body(provider)), now=NOW)
    assert (answer.status, answer.body["error"]) == (503, "not_enabled")
    assert answer.headers == {"retry-after": "300"}
    assert provider in answer.body["message"]
    assert f"webhooks.inbound.{provider}.enabled = true" in answer.body["message"]
    assert counts(engine)["inbound_events"] == 0


def test_a_provider_crmhub_does_not_know_is_404(receiver: InboundReceiver) -> None:
    answer = receiver.receive("mailchimp", _signed("stripe", _body("stripe")), now=NOW)  # type: ignore[arg-type]
    assert (answer.status, answer.body["error"]) == (404, "unknown_provider")


def test_an_enabled_provider_without_its_secret_fails_at_start(
    make_receiver: Callable[..., InboundReceiver],
) -> None:
    config = InboundConfig.model_validate({"stripe": {"enabled": True}})
    receiver = make_receiver(config)
    assert receiver.config.stripe.enabled
    with pytest.raises(WebhookConfigError, match="STRIPE_WEBHOOK_SECRET"):
        InboundReceiver(
            config, {k: v for k, v in SECRETS.items() if k != "STRIPE_WEBHOOK_SECRET"}, receiver.sync_engine
        )


def test_a_day_old_stripe_event_is_401_however_its_timestamps_are_arranged(
    signed_receiver: InboundReceiver, engine: Engine
) -> None:
    body = _body("stripe")
    old, fresh = int((NOW - timedelta(days=1)).timestamp()), int(NOW.timestamp())
    signed = stripe_request(body, at=NOW - timedelta(days=1)).headers["stripe-signature"]
    signature = signed.split(",v1=")[1]
    headers = [
        signed,
        # The SDK reads the signed `t`; a fresh one after a space must not pass the age check.
        f"v1={signature}, t={fresh},t={old}",
        f"t={fresh},t={old},v1={signature}",
        f"t={old},t={fresh},v1={signature}",
    ]
    for header in headers:
        request = replace(stripe_request(body), headers={"stripe-signature": header})
        answer = signed_receiver.receive("stripe", request, now=NOW)
        assert answer.status == 401, (header, answer.body)
    assert counts(engine)["inbound_events"] == 0


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("stripe", "stripe-signature", "t=1795348800,v1=é"),
        ("stripe", "stripe-signature", "t=¹795348800,v1=00"),
        ("hubspot", "x-hubspot-signature-v3", "é"),
        ("hubspot", "x-hubspot-request-timestamp", "²"),
    ],
)
def test_odd_characters_in_signature_headers_are_401_not_500(
    signed_receiver: InboundReceiver, provider: Provider, header: str, value: str
) -> None:
    request = _signed(provider, _body(provider))
    request = replace(request, headers={**request.headers, header: value})
    answer = signed_receiver.receive(provider, request, now=NOW)
    assert answer.status == 401, answer.body
    assert answer.body["error"] == "invalid_signature"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("depth", [65, 100_000])
def test_deeply_nested_json_is_400_not_500(
    signed_receiver: InboundReceiver, engine: Engine, provider: Provider, depth: int
) -> None:
    body = b"[" * depth + b"]" * depth
    answer = signed_receiver.receive(provider, _signed(provider, body), now=NOW)
    assert answer.status == 400, answer.body
    assert "nests deeper than 64" in answer.body["message"]
    assert counts(engine)["inbound_events"] == 0
