"""Segment Spec messages into Records and ContactEvents, on the Spec's own examples."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    InvalidMessageError,
    check_size,
    parse_batch,
    parse_message,
)
from connectors.segmentio import parse_messages

RECEIVED = datetime(2015, 2, 23, 22, 28, 56, tzinfo=UTC)

# The examples of the Segment Spec pages (identify, track, page, screen, alias, group), trimmed of
# nothing we read.
IDENTIFY: dict[str, Any] = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2)"},
    "integrations": {"All": False, "Mixpanel": True, "Salesforce": True},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium", "logins": 5},
    "type": "identify",
    "userId": "97980cfea0067",
    "version": "1.1",
}
TRACK: dict[str, Any] = {
    "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    "context": {
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "ip": "108.0.78.21",
        "traits": {"email": "ai@example.com"},
    },
    "event": "Course Clicked",
    "integrations": {},
    "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
    "properties": {"title": "Intro to Analytics"},
    "receivedAt": "2015-12-12T19:11:01.266Z",
    "sentAt": "2015-12-12T19:11:01.169Z",
    "timestamp": "2015-12-12T19:11:01.249Z",
    "type": "track",
    "userId": "AiUGstSDIg",
    "originalTimestamp": "2015-12-12T19:11:01.152Z",
}
PAGE: dict[str, Any] = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8"},
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "name": "Home",
    "properties": {"title": "Welcome | Initech", "url": "http://www.example.com"},
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "type": "page",
    "userId": "97980cfea0067",
    "version": "1.1",
}
SCREEN: dict[str, Any] = {
    "anonymousId": "3a12eab0-bca7-11e4-8dfc-aa07a5b093db",
    "channel": "mobile",
    "context": {"ip": "8.8.8.8"},
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "name": "Home",
    "properties": {"variation": "blue signup button"},
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "type": "screen",
    "userId": "97980cfea0067",
    "version": "1.1",
}
ALIAS: dict[str, Any] = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_5)"},
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "previousId": "39239-239239-239239-23923",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "type": "alias",
    "userId": "507f191e81",
    "version": "1.1",
}
GROUP: dict[str, Any] = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8"},
    "groupId": "0e8c78ea9d97a7b8185e8632",
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "traits": {"name": "Initech", "industry": "Technology", "employees": 329, "plan": "enterprise"},
    "timestamp": "2015-02-23T22:28:55.111Z",
    "type": "group",
    "userId": "97980cfea0067",
}


def test_identify_becomes_a_user_record() -> None:
    records, events = parse_message(IDENTIFY, received_at=RECEIVED)
    [record] = records
    assert (record.source, record.stream, record.external_id) == ("segmentio", "users", "97980cfea0067")
    assert record.updated_at == datetime(2015, 2, 23, 22, 28, 55, 111000, tzinfo=UTC)
    assert record.payload["traits"]["email"] == "peter@example.com"
    assert events == []


def test_track_becomes_a_contact_event_with_identities() -> None:
    records, [event] = parse_message(TRACK, received_at=RECEIVED)
    assert records == []
    assert (event.name, event.external_id) == ("Course Clicked", "ajs-f8ca1e4de5024d9430b3928bd8ac6b96")
    assert event.identities == {
        "segmentio_user": "AiUGstSDIg",
        "segmentio_anonymous": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "email": "ai@example.com",
    }
    assert event.properties == {"title": "Intro to Analytics"}


def test_page_becomes_page_viewed() -> None:
    _, [event] = parse_message(PAGE, received_at=RECEIVED)
    assert event.name == "Page Viewed"
    assert event.properties == {"title": "Welcome | Initech", "url": "http://www.example.com", "name": "Home"}


def test_screen_becomes_screen_viewed_like_a_page() -> None:
    records, [event] = parse_message(SCREEN, received_at=RECEIVED)
    assert records == []
    assert (event.name, event.external_id) == ("Screen Viewed", "022bb90c-bbac-11e4-8dfc-aa07a5b093db")
    assert event.occurred_at == datetime(2015, 2, 23, 22, 28, 55, 111000, tzinfo=UTC)
    assert event.identities == {
        "segmentio_user": "97980cfea0067",
        "segmentio_anonymous": "3a12eab0-bca7-11e4-8dfc-aa07a5b093db",
    }
    assert event.properties == {"variation": "blue signup button", "name": "Home"}


def test_alias_is_an_event_of_the_new_user_id_naming_the_previous_one() -> None:
    records, [event] = parse_message(ALIAS, received_at=RECEIVED)
    assert records == []
    assert event.name == "User Aliased"
    # previousId is no identity hint: it may be an earlier userId or an anonymousId.
    assert event.identities == {
        "segmentio_user": "507f191e81",
        "segmentio_anonymous": "507f191e810c19729de860ea",
    }
    assert event.properties == {"previousId": "39239-239239-239239-23923"}
    # The HTTP API's own example: no type (the /v1/alias endpoint gives it), no anonymousId.
    short = {"previousId": "39239-239239-239239-23923", "userId": "019mr8mf4r"}
    _, [event] = parse_message(short, received_at=RECEIVED, default_type="alias")
    assert event.identities == {"segmentio_user": "019mr8mf4r"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"previousId": None}, "alias needs 'previousId'"),
        ({"previousId": " "}, "alias needs 'previousId'"),
        ({"userId": None}, "alias needs 'userId'"),
    ],
)
def test_alias_needs_both_ids(change: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidMessageError, match=rf"segmentio: message: {match}"):
        parse_message({**ALIAS, **change}, received_at=RECEIVED)


def test_group_becomes_a_group_record() -> None:
    [record], events = parse_message(GROUP, received_at=RECEIVED)
    assert (record.stream, record.external_id, record.payload["traits"]["employees"]) == (
        "groups",
        "0e8c78ea9d97a7b8185e8632",
        329,
    )
    assert events == []


def test_batch_shares_context_and_sent_at() -> None:
    message = {k: v for k, v in TRACK.items() if k not in ("timestamp", "sentAt", "context")}
    body = {
        "batch": [IDENTIFY, message],
        "context": {"traits": {"email": "shared@example.com"}},
        "sentAt": "2015-12-12T19:11:01.169Z",
    }
    parsed = parse_batch(body, received_at=datetime(2015, 12, 12, 19, 11, 1, 266000, tzinfo=UTC))
    batch = parsed.batch
    assert parsed.skipped == []
    assert (batch.source, batch.cursor, batch.requests) == ("segmentio", None, 0)
    [event] = batch.events
    assert event.identities["email"] == "shared@example.com"
    # timestamp = receivedAt - (sentAt - originalTimestamp), as the Spec defines.
    assert event.occurred_at == datetime(2015, 12, 12, 19, 11, 1, 249000, tzinfo=UTC)
    assert [r.external_id for r in batch.records] == ["97980cfea0067"]


def test_anonymous_identify_and_missing_message_id() -> None:
    message = {"type": "identify", "anonymousId": "anon-1", "traits": {"email": "a@x.io"}}
    [record], _ = parse_message(message, received_at=RECEIVED)
    assert record.external_id == "anonymous:anon-1" and record.updated_at == RECEIVED
    assert record.payload["messageId"].startswith("derived-")
    assert (
        parse_message(copy.deepcopy(message), received_at=RECEIVED)[0][0].payload["messageId"]
        == (record.payload["messageId"])
    )


def test_single_message_endpoints_may_omit_type() -> None:
    message = {k: v for k, v in TRACK.items() if k != "type"}
    _, [event] = parse_message(message, received_at=RECEIVED, default_type="track")
    assert event.name == "Course Clicked"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"userId": None, "anonymousId": None}, "userId or anonymousId is required"),
        ({"userId": "", "anonymousId": "  "}, "userId or anonymousId is required"),
        ({"type": "delete"}, "type 'delete' is not supported"),
        ({"event": ""}, "track needs 'event'"),
        ({"properties": ["a"]}, "'properties' must be an object"),
        ({"timestamp": "yesterday"}, "'timestamp' is not an ISO-8601 time"),
        ({"messageId": 5}, "'messageId' must be a non-empty string"),
        ({"event": "e" * 201}, "event is 201 characters long: send at most 200"),
        ({"userId": "u" * 246}, "userId is 246 characters long: send at most 245"),
        ({"context": {"traits": {"email": "a" * 321}}}, "traits.email is 321 characters long"),
    ],
)
def test_invalid_messages_name_field_and_fix(change: dict[str, Any], match: str) -> None:
    message = {**TRACK, **change}
    with pytest.raises(InvalidMessageError, match=rf"segmentio: message 1: .*{match}"):
        parse_messages([IDENTIFY, message], received_at=RECEIVED)


def test_a_batch_leaves_out_what_it_cannot_use_and_keeps_the_rest() -> None:
    # Segment's libraries do not retry a 400: refusing the batch would lose every good message.
    body = {
        "batch": [
            IDENTIFY,
            {**TRACK, "type": "delete"},
            TRACK,
            {**TRACK, "messageId": "m-no-one", "userId": None, "anonymousId": None},
            {**PAGE, "context": "not an object"},
            SCREEN,
            ALIAS,
            "not a message",
        ]
    }
    parsed = parse_batch(body, received_at=RECEIVED)
    assert [r.external_id for r in parsed.batch.records] == ["97980cfea0067"]
    assert [e.name for e in parsed.batch.events] == ["Course Clicked", "Screen Viewed", "User Aliased"]
    assert parsed.skipped == [
        "segmentio: message 1: type 'delete' is not supported: "
        "send one of identify, track, page, screen, group, alias",
        "segmentio: message 3: userId or anonymousId is required: send at least one of them",
        "segmentio: message 4: 'context' must be an object, got str: send 'context' as a JSON object",
        "segmentio: message 7: expected a JSON object, got str: send one object per message",
    ]


def test_invalid_bodies() -> None:
    with pytest.raises(InvalidMessageError, match=r"'batch' must be a list"):
        parse_batch({"batch": {}}, received_at=RECEIVED)
    with pytest.raises(InvalidMessageError, match=r"group needs 'groupId'"):
        parse_message({**GROUP, "groupId": None}, received_at=RECEIVED)
    with pytest.raises(InvalidMessageError, match=r"expected a JSON object"):
        parse_message("identify", received_at=RECEIVED)


def test_size_limits() -> None:
    assert (MAX_MESSAGE_BYTES, MAX_BATCH_BYTES) == (32 * 1024, 500 * 1024)
    check_size(json.dumps(TRACK).encode())
    check_size(b"x" * MAX_MESSAGE_BYTES)
    with pytest.raises(InvalidMessageError, match=r"message of 32769 bytes is over the 32 KB limit"):
        check_size(b"x" * (MAX_MESSAGE_BYTES + 1))
    check_size(b"x" * MAX_BATCH_BYTES, batch=True)
    with pytest.raises(InvalidMessageError, match=r"batch of 512001 bytes is over the 500 KB limit"):
        check_size(b"x" * (MAX_BATCH_BYTES + 1), batch=True)


def test_a_resent_batch_without_message_ids_is_the_same_messages() -> None:
    # A library sets sentAt anew on every retry; the ids derived for messages without one must not move.
    message = {"type": "track", "userId": "u_1", "event": "Retry Probe", "timestamp": "2026-12-04T10:00:00Z"}
    first, again = (
        parse_batch({"batch": [dict(message)], "sentAt": sent}, received_at=RECEIVED).batch.events[0]
        for sent in ("2026-12-04T10:00:01Z", "2026-12-04T10:00:09Z")
    )
    assert first.external_id == again.external_id and first.external_id.startswith("derived-")


def test_a_message_id_longer_than_the_store_keeps_is_a_stable_digest() -> None:
    long_id = "m" * 300
    [event] = parse_message({**TRACK, "messageId": long_id}, received_at=RECEIVED)[1]
    [same] = parse_message({**TRACK, "messageId": long_id}, received_at=RECEIVED)[1]
    assert event.external_id == same.external_id and len(event.external_id) <= 255
