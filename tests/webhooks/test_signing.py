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
