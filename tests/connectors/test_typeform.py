"""Typeform: since + before-token sweeps, form definitions, errors -- against a respx-served fake."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors import (
    Batch,
    ConnectorsConfig,
    MalformedPageError,
    PaginationLoopError,
    PermanentError,
    TypeformSource,
    build_source,
)
from connectors.config import TypeformConfig
from tests.connectors.fakes import (
    NOW,
    NOW_TS,
    TYPEFORM_URL,
    FakeSleep,
    FakeTypeform,
    iso_s,
    keys,
    resume_everywhere,
)

T0 = NOW_TS - 3600


@pytest.fixture
def fake() -> FakeTypeform:
    fake = FakeTypeform()
    for n in range(7):
        fake.submit(
            "abc", f"tok{n}", T0 + n * 10, email=f"p{n}@x.io" if n % 2 else None, hidden={"user_id": f"u{n}"}
        )
    fake.forms["abc"] = {
        "id": "abc",
        "title": "Signup",
        "hidden": ["user_id"],
        "fields": [
            {"id": "f1", "ref": "plan", "title": "Plan?", "type": "multiple_choice"},
            {
                "id": "g1",
                "ref": "about",
                "title": "About you",
                "type": "group",
                "properties": {"fields": [{"id": "f2", "ref": "email", "title": "E-mail", "type": "email"}]},
            },
        ],
    }
    return fake


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def _source(
    fake: FakeTypeform, sleep: FakeSleep, forms: tuple[str, ...] = ("abc",), page_size: int = 3
) -> TypeformSource:
    config = ConnectorsConfig(
        typeform=TypeformConfig(enabled=True, base_url=TYPEFORM_URL, forms=list(forms), page_size=page_size)
    )
    source = build_source(
        "typeform", config, "tfp_1", fake.client(fake.router()), sleep=sleep, clock=sleep.clock
    )
    assert isinstance(source, TypeformSource)
    return source


def _pull(source: TypeformSource, cursor: str | None, full: bool = False) -> list[Batch]:
    return list(source.stream("responses").pull(cursor, now=NOW, full=full))


def test_first_pull_sweeps_newest_first_to_the_end(fake: FakeTypeform, sleep: FakeSleep) -> None:
    batches = _pull(_source(fake, sleep), None)
    assert [[r.external_id for r in b.records] for b in batches] == [
        ["tok6", "tok5", "tok4"],
        ["tok3", "tok2", "tok1"],
        ["tok0"],
    ]
    assert json.loads(batches[-1].cursor or "") == {
        "forms": {"abc": {"since": iso_s(T0 + 60), "tokens": ["tok6"]}}
    }
    middle = json.loads(batches[0].cursor or "")["forms"]["abc"]
    assert middle["before"] == "tok4" and middle["since"] is None
    params = fake.requests[1].url.params
    assert (params["before"], params["page_size"], params["completed"]) == ("tok4", "3", "true")
    assert "since" not in params
    assert all(b.full for b in batches)


def test_records_and_form_submitted_events(fake: FakeTypeform, sleep: FakeSleep) -> None:
    batches = _pull(_source(fake, sleep), None)
    record = batches[0].records[1]
    assert (record.stream, record.payload["form_id"], record.updated_at.timestamp()) == (
        "responses",
        "abc",
        T0 + 50,
    )
    event = batches[0].events[1]
    assert (event.name, event.external_id) == ("form.submitted", "tok5")
    assert event.identities == {"user_id": "u5", "email": "p5@x.io"}
    assert event.properties == {"form_id": "abc", "answers": {"plan": "Pro", "email": "p5@x.io"}}


def test_incremental_since_is_inclusive_and_deduplicated_by_token(
    fake: FakeTypeform, sleep: FakeSleep
) -> None:
    source = _source(fake, sleep)
    cursor = _pull(source, None)[-1].cursor
    fake.submit("abc", "tok7", T0 + 60)  # the same second as tok6, already stored
    fake.submit("abc", "tok8", T0 + 70)
    batches = _pull(source, cursor)
    assert [k[1] for k in keys(batches)] == ["tok8", "tok7"]
    assert fake.requests[-1].url.params["since"] == iso_s(T0 + 60)
    assert sum(b.requests for b in batches) == 2  # tok8, tok7 and the boundary tok6 fill a page of 3
    assert json.loads(batches[-1].cursor or "")["forms"]["abc"] == {
        "since": iso_s(T0 + 70),
        "tokens": ["tok8"],
    }
    assert keys(_pull(source, batches[-1].cursor)) == []


def test_resume_from_any_saved_cursor_matches_an_uninterrupted_pull(
    fake: FakeTypeform, sleep: FakeSleep
) -> None:
    fake.submit("xyz", "other1", T0)
    fake.submit("xyz", "other2", T0 + 1)
    source = _source(fake, sleep, forms=("abc", "xyz"), page_size=2)
    whole, resumed = resume_everywhere(lambda c: _pull(source, c), None)
    assert len(keys(whole)) == 9
    for run in resumed:
        assert keys(run) == keys(whole)


def test_resume_mid_sweep_then_new_responses_are_not_missed(fake: FakeTypeform, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    first = _pull(source, None)[0]
    fake.submit("abc", "late", T0 + 500)  # arrives while the sweep is interrupted
    rest = _pull(source, first.cursor)
    assert [k[1] for k in keys(rest)] == ["tok3", "tok2", "tok1", "tok0"]
    assert [k[1] for k in keys(_pull(source, rest[-1].cursor))] == ["late"]


def test_form_definitions_flatten_groups(fake: FakeTypeform, sleep: FakeSleep) -> None:
    definition = _source(fake, sleep).form_definition("abc")
    assert definition.hidden == ("user_id",)
    assert [(f.ref, f.type) for f in definition.fields] == [
        ("plan", "multiple_choice"),
        ("about", "group"),
        ("email", "email"),
    ]


def test_missing_form_is_permanent_with_a_clear_message(fake: FakeTypeform, sleep: FakeSleep) -> None:
    with pytest.raises(
        PermanentError, match=r"typeform: /forms/nope: not found \(404\) \(Non existing form\)"
    ):
        _source(fake, sleep).form_definition("nope")


def test_429_honours_retry_after(fake: FakeTypeform, sleep: FakeSleep) -> None:
    fake.fail_next(httpx.Response(429, headers={"Retry-After": "3"}, json={"code": "RATE_LIMIT"}))
    batches = _pull(_source(fake, sleep), None)
    assert 3.0 in sleep.calls and batches[0].requests == 2


def test_requests_are_throttled_to_the_configured_rate(fake: FakeTypeform, sleep: FakeSleep) -> None:
    _pull(_source(fake, sleep, page_size=1), None)
    # 7 full pages and one empty one at 2/s: the first at once, then one every half second.
    assert len(fake.requests) == 8
    assert sleep.now - 1000.0 == pytest.approx((8 - 1) / 2.0)


def test_5xx_and_timeouts_are_retried(fake: FakeTypeform, sleep: FakeSleep) -> None:
    fake.fail_next(httpx.Response(500), httpx.ConnectTimeout("slow"))
    assert len(keys(_pull(_source(fake, sleep), None))) == 7


def test_wrong_token_is_permanent_with_a_clear_message(fake: FakeTypeform, sleep: FakeSleep) -> None:
    fake.token = "bearer other"
    with pytest.raises(
        PermanentError, match=r"authentication failed \(401\).*connectors.typeform.api_key_env"
    ):
        _pull(_source(fake, sleep), None)


def test_a_malformed_page_is_a_clear_error(fake: FakeTypeform, sleep: FakeSleep) -> None:
    fake.fail_next(httpx.Response(200, text="oops"))
    with pytest.raises(MalformedPageError, match=r"typeform: /forms/abc/responses: malformed page"):
        _pull(_source(fake, sleep), None)
    fake.fail_next(httpx.Response(200, json={"items": [{"token": "t"}]}))
    with pytest.raises(MalformedPageError, match=r"lacks token or submitted_at"):
        _pull(_source(fake, sleep), None)


def test_a_repeated_before_token_is_a_loop_error(fake: FakeTypeform, sleep: FakeSleep) -> None:
    page = {"items": [{"token": "same", "submitted_at": iso_s(T0)}]}
    fake.fail_next(*[httpx.Response(200, json=page)] * 3)
    with pytest.raises(PaginationLoopError, match=r"returned token 'same' twice"):
        _pull(_source(fake, sleep, page_size=1), None)


def test_the_package_global_base_url_is_untouched(fake: FakeTypeform, sleep: FakeSleep) -> None:
    import typeform.client

    _pull(_source(fake, sleep), None)
    assert typeform.client.API_BASE_URL == "https://api.typeform.com"
    assert all(str(r.url).startswith(TYPEFORM_URL) for r in fake.requests)


@pytest.mark.parametrize("submitted", [None, "0001-01-01T00:00:00Z"], ids=["absent", "zero-time"])
def test_a_response_only_started_is_left_out_and_the_rest_of_its_page_kept(
    fake: FakeTypeform, sleep: FakeSleep, submitted: str | None
) -> None:
    started: dict[str, object] = {
        "token": "p1",
        "landed_at": iso_s(T0),
        "submitted_at": submitted,
        "answers": [],
    }
    done = {"token": "c1", "landed_at": iso_s(T0), "submitted_at": iso_s(T0), "answers": []}
    fake.fail_next(httpx.Response(200, json={"items": [started, done], "page_count": 1}))
    [batch] = [b for b in _pull(_source(fake, sleep), None) if b.records]
    assert [r.external_id for r in batch.records] == ["c1"]
