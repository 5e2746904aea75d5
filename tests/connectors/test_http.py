"""Status classification, error messages, Retry-After and the retrier."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import pytest

from connectors import PermanentError, Retrier, RetryableError, error_for_status, is_retryable_status
from connectors.http import MAX_RETRY_AFTER_SECONDS, error_for_transport, parse_retry_after


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (402, False),
        (403, False),
        (404, False),
        (405, False),
        (410, False),
        (413, False),
        (422, False),
        (408, True),
        (409, True),
        (425, True),
        (429, True),
        (500, True),
        (501, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
    ],
)
def test_status_classification(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
    assert isinstance(error_for_status("stripe", status), RetryableError if retryable else PermanentError)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "stripe: authentication failed (401): check connectors.stripe.api_key_env"),
        (403, "stripe: permission denied (403): give the key in connectors.stripe.api_key_env read access"),
        (404, "stripe: not found (404): check connectors.stripe.base_url and the configured ids"),
        (429, "stripe: rate limited (429): retry later or lower connectors.stripe.requests_per_second"),
        (503, "stripe: provider error (503): retry later; the provider is failing"),
    ],
)
def test_messages_name_thing_cause_and_fix(status: int, message: str) -> None:
    assert str(error_for_status("stripe", status)).startswith(message)


def test_a_rate_limit_under_another_status_is_retryable() -> None:
    error = error_for_status("stripe", 400, what="/v1/charges", rate_limited=True, retry_after=2.0)
    assert isinstance(error, RetryableError) and error.retry_after == 2.0
    assert str(error).startswith(
        "stripe: /v1/charges: rate limited (400): retry later or lower connectors.stripe.requests_per_second"
    )


def test_message_carries_what_and_detail() -> None:
    error = error_for_status("hubspot", 400, what="contacts search", detail="bad filter")
    assert str(error).startswith(
        "hubspot: contacts search: bad request (400) (bad filter): check connectors.hubspot"
    )


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (httpx.ReadTimeout("t"), True),
        (httpx.ConnectTimeout("t"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.RemoteProtocolError("eof"), True),
        (ValueError("odd"), False),
    ],
)
def test_transport_failures(exc: Exception, retryable: bool) -> None:
    assert error_for_transport("typeform", exc).retryable is retryable


def test_a_failed_connection_names_where_it_went_without_path_or_query() -> None:
    request = httpx.Request("GET", "https://api.eu.typeform.com:8443/forms/abc/responses?since=1")
    said = str(error_for_transport("typeform", httpx.ConnectError("refused", request=request)))
    assert said == (
        "typeform: connection to https://api.eu.typeform.com:8443 failed (ConnectError): "
        "check connectors.typeform.base_url"
    )
    assert "connection to the provider failed" in str(
        error_for_transport("typeform", httpx.ConnectError("x"))
    )


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


class _Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retrier_honours_retry_after_and_caps_it() -> None:
    sleeps: list[float] = []
    retrier = Retrier(max_attempts=5, sleep=sleeps.append)
    fn = _Flaky(RetryableError("a", retry_after=4.0), RetryableError("b", retry_after=10_000.0))
    assert retrier.call(fn) == "ok"
    assert sleeps == [4.0, MAX_RETRY_AFTER_SECONDS]
    assert retrier.take_attempts() == 3 and retrier.take_attempts() == 0


def test_retrier_backs_off_exponentially_with_jitter() -> None:
    sleeps: list[float] = []
    retrier = Retrier(max_attempts=4, sleep=sleeps.append, initial=1.0, maximum=30.0)
    assert retrier.call(_Flaky(RetryableError("x"), RetryableError("x"), RetryableError("x"))) == "ok"
    for n, slept in enumerate(sleeps):
        assert 2**n <= slept <= 2**n + 1


def test_retrier_gives_up_and_does_not_retry_permanent_errors() -> None:
    sleeps: list[float] = []
    retrier = Retrier(max_attempts=3, sleep=sleeps.append)
    with pytest.raises(RetryableError, match=r"third"):
        retrier.call(_Flaky(RetryableError("first"), RetryableError("second"), RetryableError("third")))
    assert len(sleeps) == 2
    fn = _Flaky(PermanentError("nope"))
    with pytest.raises(PermanentError):
        retrier.call(fn)
    assert fn.calls == 1 and len(sleeps) == 2


def test_each_thread_counts_its_own_attempts() -> None:
    # Streams of one source pulled side by side share its retrier; each page counts its own requests.
    retrier = Retrier(max_attempts=3, sleep=lambda _s: None)
    counted: dict[str, int] = {}
    ready = threading.Barrier(2)

    def pull(name: str, calls: int) -> None:
        ready.wait(5)
        for _ in range(calls):
            retrier.call(lambda: "ok")
        ready.wait(5)  # both threads have made every call before either counts
        counted[name] = retrier.take_attempts()

    threads = [threading.Thread(target=pull, args=(n, c)) for n, c in (("customers", 3), ("invoices", 5))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert counted == {"customers": 3, "invoices": 5}
    assert retrier.take_attempts() == 0  # this thread made none
