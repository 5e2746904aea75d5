"""The body of a delivery: under 20 kB whatever text the fields hold, and crmhub's own keys always its own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, update

from field_mapping.types import FieldType
from sync.fields import create_field
from sync.store.field_columns import fields_table
from sync.store.tables import deliveries
from tests.webhooks.conftest import (
    T0,
    Clock,
    Consumer,
    add_contact,
    add_segment,
    add_transition,
    endpoint,
    make_config,
    make_worker,
    matches_schema,
    secrets_for,
)
from webhooks.config import CONTACT_KEYS
from webhooks.payload import MAX_BODY_BYTES, MAX_TEXT, TransitionInfo, encode_body, payload
from webhooks.queue import Job
from webhooks.record import Attempt
from webhooks.sender import WebhookSender

INFO = TransitionInfo(7, 42, "entered", T0, "rule", "3f2a", None, 3, "vip", "VIP customers")
CJK = "東京" * (MAX_TEXT // 2)  # 500 characters the docs allow, 1,500 bytes in UTF-8


def _contact(body: dict[str, Any]) -> dict[str, Any]:
    contact: dict[str, Any] = body["data"]["contact"]
    return contact


def _assert_fitted(body: dict[str, Any], given_fields: dict[str, Any]) -> None:
    """Under the limit, valid, each text a start of what was given, and every shortened one named."""
    assert len(encode_body(body)) <= MAX_BODY_BYTES
    matches_schema(body)
    contact = _contact(body)
    named = contact.get("truncated_fields", [])
    assert [n for n in given_fields if n in named] == named, "named in the endpoint's order"
    for name, value in given_fields.items():
        if value == contact[name]:
            assert name not in named
        else:
            assert name in named and (contact[name] is None or value.startswith(contact[name])), name


def test_cjk_text_the_docs_allow_is_cut_to_fit_and_named() -> None:
    given_fields = {"email": "ada@example.com", **{f"bio{i}": CJK for i in range(20)}}
    body = payload(INFO, given_fields)
    _assert_fitted(body, given_fields)
    contact = _contact(body)
    assert contact["email"] == "ada@example.com", "a short value stays whole"
    assert contact["truncated_fields"] == [f"bio{i}" for i in range(20)]
    assert len({contact[f"bio{i}"] for i in range(20)}) == 1, "the long texts are cut alike"
    assert len(encode_body(body)) > MAX_BODY_BYTES - 2_000, "cut no more than needed"


def test_text_that_doubles_when_escaped_is_cut_to_fit() -> None:
    given_fields = {f"note{i}": '"\n' * (MAX_TEXT // 2) for i in range(30)}
    _assert_fitted(payload(INFO, given_fields), given_fields)


def test_a_body_that_fits_is_sent_whole_and_only_text_over_500_characters_is_named() -> None:
    given_fields = {"email": "ada@example.com", "plan": None, "score": 12.5, "bio": "é" * 600}
    contact = _contact(payload(INFO, given_fields))
    assert contact == {
        "id": 42,
        "email": "ada@example.com",
        "plan": None,
        "score": 12.5,
        "bio": "é" * MAX_TEXT,
        "truncated_fields": ["bio"],
    }
    assert "truncated_fields" not in _contact(payload(INFO, {"email": "ada@example.com"}))


_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True).filter(lambda n: n not in CONTACT_KEYS)
# Long text of characters that grow when encoded (2 to 6 bytes each), enough of it to pass 20 kB.
_TEXTS = st.dictionaries(
    _NAMES,
    st.text(alphabet=st.sampled_from('"\n\x01東😀é'), min_size=MAX_TEXT - 50, max_size=MAX_TEXT + 50),
    min_size=15,
    max_size=25,
)
_OTHERS = st.dictionaries(
    _NAMES,
    st.one_of(
        st.text(max_size=50),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    ),
    max_size=5,
)


@settings(max_examples=50, deadline=None)
@given(_OTHERS, _TEXTS, st.lists(st.integers(1, 2**31), max_size=20))
def test_any_30_fields_make_a_valid_body_under_20_kb(
    others: dict[str, Any], texts: dict[str, str], merged: list[int]
) -> None:
    given_fields = others | texts
    body = payload(INFO, given_fields, merged)
    _assert_fitted(body, given_fields)
    assert _contact(body).get("merged_ids", []) == merged


def test_fields_named_like_crmhubs_own_keys_never_replace_them() -> None:
    hostile = {"id": 999, "merged_ids": "someone else", "truncated_fields": 1, "email": "ada@example.com"}
    merged = _contact(payload(INFO, hostile, [5]))
    assert merged == {"id": 42, "email": "ada@example.com", "merged_ids": [5]}
    assert _contact(payload(INFO, hostile)) == {"id": 42, "email": "ada@example.com"}


def test_the_worker_delivers_20_fields_of_cjk_text_instead_of_giving_up(engine: Engine) -> None:
    names = [f"bio{i}" for i in range(20)]
    with engine.begin() as conn:
        cid = add_contact(conn, "ada@example.com")
        for i, name in enumerate(names):
            field = create_field(conn, name, FieldType.STRING, now=T0, label=name, origin="rule", source=None)
            table = fields_table([field.column])
            if i == 0:
                conn.execute(insert(table).values({"contact_id": cid, field.column: CJK}))
            else:
                conn.execute(update(table).where(table.c.contact_id == cid).values({field.column: CJK}))
        add_transition(conn, add_segment(conn, "vip"), cid, "entered")
    config = make_config(("sms", endpoint("sms", fields=["email", *names])))
    consumer = Consumer()
    asyncio.run(make_worker(engine, config, {"sms": consumer}, secrets_for(config)).run(Clock()))
    with engine.connect() as conn:
        assert conn.execute(select(deliveries.c.status)).scalar_one() == "succeeded"
    [received] = consumer.received
    assert len(received.content) <= MAX_BODY_BYTES
    [body] = consumer.bodies()
    matches_schema(body)
    assert _contact(body)["truncated_fields"] == names


def test_the_sender_posts_a_body_of_20_cjk_fields_instead_of_refusing_it() -> None:
    # The reviewer's case: `dead`, "refused: body is 30420 bytes, over 20000", and no replay could help.
    consumer = Consumer()
    sender = WebhookSender(
        endpoint("sms"), [b"k" * 32], httpx.AsyncClient(transport=httpx.MockTransport(consumer))
    )
    job = Job(delivery_id=1, webhook_id="msg_1", endpoint="sms", attempts=0, transition=INFO)

    async def send() -> Attempt:
        try:
            return await sender.send(job, payload(INFO, {f"bio{i}": CJK for i in range(20)}), T0)
        finally:
            await sender.aclose()

    attempt = asyncio.run(send())
    assert not attempt.refused and attempt.status_code == 204, attempt.error
    assert len(consumer.received[0].content) <= MAX_BODY_BYTES
