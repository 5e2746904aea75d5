"""Signing as consumers verify it: the standardwebhooks library accepts every signature, across rotation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks import SecretError, decode_secret, generate_secret, signed_headers
from webhooks.signing import SignatureError, verify


@pytest.mark.parametrize("size", [24, 32, 64])
def test_generated_secrets_decode_to_their_size(size: int) -> None:
    secret = generate_secret(size)
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == size


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("c2VjcmV0", "starting with whsec_"),
        ("whsec_" + base64.b64encode(b"x" * 6).decode(), "6 bytes"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "65 bytes"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "standard base64"),
    ],
)
def test_bad_secrets_are_refused_with_the_fix(secret: str, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        decode_secret(secret)


def test_every_active_secret_verifies_so_rotation_has_no_gap() -> None:
    current, old, unrelated = generate_secret(), generate_secret(), generate_secret()
    body = b'{"type":"segment.entered"}'
    headers = signed_headers("msg_1", int(time.time()), body, [decode_secret(current), decode_secret(old)])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(current).verify(body, headers) == {"type": "segment.entered"}
    assert Webhook(old).verify(body, headers) == {"type": "segment.entered"}
    with pytest.raises(WebhookVerificationError):
        Webhook(unrelated).verify(body, headers)


def test_a_changed_body_or_id_fails_verification() -> None:
    secret = generate_secret()
    headers = signed_headers("msg_1", int(time.time()), b"{}", [decode_secret(secret)])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{ }", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", headers | {"webhook-id": "msg_2"})


@pytest.mark.parametrize(
    ("header", "value"),
    [("webhook-timestamp", "¹"), ("webhook-signature", "v1,é"), ("webhook-signature", "v1,\u00ff\u00fe")],
)
def test_odd_characters_in_the_headers_are_a_signature_error(header: str, value: str) -> None:
    key = decode_secret(generate_secret())
    now = int(time.time())
    headers = signed_headers("msg_1", now, b"{}", [key]) | {header: value}
    with pytest.raises(SignatureError):
        verify(headers, b"{}", [key], now=now)


STAMP = 1_795_435_200  # a fixed signing time: `verify` takes its clock as `now`


@pytest.mark.parametrize("skew", [300, -300])
def test_a_timestamp_up_to_five_minutes_either_way_verifies(skew: int) -> None:
    key = decode_secret(generate_secret())
    verify(signed_headers("msg_1", STAMP, b"{}", [key]), b"{}", [key], now=STAMP + skew)


@pytest.mark.parametrize("skew", [301, -301], ids=["past", "future"])
def test_a_timestamp_more_than_five_minutes_off_either_way_is_refused(skew: int) -> None:
    key = decode_secret(generate_secret())
    headers = signed_headers("msg_1", STAMP, b"{}", [key])
    with pytest.raises(SignatureError, match="more than 300 s from our clock"):
        verify(headers, b"{}", [key], now=STAMP + skew)


@pytest.mark.parametrize("signature", ["v2,abc", "v1a,abc", "v1"])
def test_a_header_with_no_v1_signature_is_refused(signature: str) -> None:
    key = decode_secret(generate_secret())
    headers = signed_headers("msg_1", STAMP, b"{}", [key]) | {"webhook-signature": signature}
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(headers, b"{}", [key], now=STAMP)


def test_one_matching_signature_among_several_verifies() -> None:
    new, old = decode_secret(generate_secret()), decode_secret(generate_secret())
    # A sender that has not rotated yet signs with the old secret only; we hold both.
    verify(signed_headers("msg_1", STAMP, b"{}", [old]), b"{}", [new, old], now=STAMP)
    good = signed_headers("msg_1", STAMP, b"{}", [new])
    bogus = signed_headers("msg_1", STAMP, b"{}", [old])["webhook-signature"]
    headers = good | {"webhook-signature": f"{bogus} {good['webhook-signature']}"}
    verify(headers, b"{}", [new], now=STAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    key = decode_secret(generate_secret())
    # Signed over an empty id, so that without its header the rest would still verify.
    headers = signed_headers("", STAMP, b"{}", [key])
    del headers[missing]
    with pytest.raises(SignatureError, match="missing webhook-id, webhook-timestamp or webhook-signature"):
        verify(headers, b"{}", [key], now=STAMP)
