"""The Typeform look-alike through the official `typeform` SDK (module base URL patched)."""

from __future__ import annotations

import pytest
import typeform.client
from typeform import Typeform

from crmhub.sandbox import Sandbox, credentials
from crmhub.sandbox.typeform_store import FORM_ID, iso_seconds

VALUE_TYPES = {
    "text",
    "email",
    "phone_number",
    "url",
    "number",
    "boolean",
    "date",
    "choice",
    "choices",
    "payment",
    "file_url",
}


@pytest.fixture
def client(url: str, monkeypatch: pytest.MonkeyPatch) -> Typeform:
    """A Typeform SDK client whose base URL is the sandbox."""
    monkeypatch.setattr(typeform.client, "API_BASE_URL", url)
    return Typeform(credentials.TYPEFORM_TOKEN)


def test_form_has_refs_types_and_hidden_fields(client: Typeform) -> None:
    forms = client.forms.list()
    assert [f["id"] for f in forms["items"]] == [FORM_ID]
    form = client.forms.get(FORM_ID)
    assert form["hidden"] == ["user_id", "email"]
    kinds = {f["ref"]: f["type"] for f in form["fields"]}
    assert kinds["nps"] == "opinion_scale" and kinds["consent"] == "yes_no"
    assert all(f["id"] and f["ref"] and f["title"] for f in form["fields"])
    assert form["fields"][9]["properties"]["choices"][0]["ref"] == "basic"


def test_since_then_before_tokens_page_through_everything(client: Typeform, sandbox: Sandbox) -> None:
    stored = [r for r in sandbox.world.typeform.responses[FORM_ID] if r.submitted_at is not None]
    since = stored[len(stored) // 4].submitted_at
    assert since is not None
    expected = [r.token for r in reversed(stored) if (r.submitted_at or 0) >= since]
    tokens: list[str] = []
    before = None
    while True:
        page = client.responses.list(FORM_ID, pageSize=40, since=iso_seconds(since), before=before)
        if not page["items"]:
            break
        tokens.extend(item["token"] for item in page["items"])
        before = page["items"][-1]["token"]
    assert tokens == expected


def test_until_is_inclusive_and_after_goes_forward(client: Typeform, sandbox: Sandbox) -> None:
    stored = [r for r in sandbox.world.typeform.responses[FORM_ID] if r.submitted_at is not None]
    pivot = stored[10]
    page = client.responses.list(FORM_ID, pageSize=1000, until=str(pivot.submitted_at))
    expected = [r.token for r in reversed(stored) if (r.submitted_at or 0) <= (pivot.submitted_at or 0)]
    assert [i["token"] for i in page["items"]] == expected
    newer = client.responses.list(FORM_ID, pageSize=3, after=pivot.token)
    assert [i["token"] for i in newer["items"]] == [r.token for r in stored[11:14]]


def test_every_answer_type_and_hidden_values(client: Typeform) -> None:
    page = client.responses.list(FORM_ID, pageSize=1000, completed=True)
    assert page["total_items"] > 0 and page["page_count"] >= 1
    value_types = {answer["type"] for item in page["items"] for answer in item["answers"]}
    assert value_types == VALUE_TYPES
    item = page["items"][0]
    assert set(item["hidden"]) == {"user_id", "email"}
    nps = next(a for a in item["answers"] if a["field"]["ref"] == "nps")
    assert nps["field"]["type"] == "opinion_scale" and 0 <= nps["number"] <= 10


def test_partial_responses_only_with_completed_false(client: Typeform) -> None:
    partial = client.responses.list(FORM_ID, pageSize=1000, completed=False)
    assert partial["items"] and all(i["submitted_at"] is None for i in partial["items"])


def test_page_size_over_1000_and_sort_with_tokens_are_errors(client: Typeform) -> None:
    with pytest.raises(Exception, match="page_size"):
        client.responses.list(FORM_ID, pageSize=1001)
    with pytest.raises(Exception, match="sort"):
        client.responses.list(FORM_ID, before="abc", sort="submitted_at,asc")


def test_wrong_token_and_rate_limit(url: str, client: Typeform, sandbox: Sandbox) -> None:
    with pytest.raises(Exception, match="Authentication"):
        Typeform("tfp_wrong").forms.list()
    sandbox.add_fault("typeform:429:1")
    with pytest.raises(Exception, match="Too many requests"):
        client.forms.list()
