"""Typeform forms and responses with every answer value type and hidden fields."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from crmhub.sandbox.people import Person, random_id

FORM_ID = "crmhubNPS"
HIDDEN_FIELDS = ["user_id", "email"]

_PLANS = [("basic", "Basic"), ("pro", "Pro"), ("enterprise", "Enterprise")]
_INTERESTS = [
    ("sms", "SMS campaigns"),
    ("email", "E-mail campaigns"),
    ("segments", "Segments"),
    ("api", "API"),
]


def iso_seconds(epoch: int) -> str:
    """Typeform's timestamp format: ISO-8601 UTC with a `Z`, to the second."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _choice_field(ref: str, kind: str, title: str, options: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": f"fld_{ref}",
        "ref": ref,
        "type": kind,
        "title": title,
        "properties": {"choices": [{"id": f"ch_{r}", "ref": r, "label": label} for r, label in options]},
    }


def _field(ref: str, kind: str, title: str, **properties: Any) -> dict[str, Any]:
    return {"id": f"fld_{ref}", "ref": ref, "type": kind, "title": title, "properties": properties}


def build_form(created: int) -> dict[str, Any]:
    """The sandbox's one form: an NPS survey with consent, contact details and a payment."""
    fields = [
        _field("nps", "opinion_scale", "How likely are you to recommend us?", steps=11, start_at_one=False),
        _field("consent", "yes_no", "May we send you marketing messages?"),
        _field("name", "short_text", "What is your name?"),
        _field("feedback", "long_text", "Anything else?"),
        _field("email", "email", "Your e-mail"),
        _field("phone", "phone_number", "Your phone", default_country_code="US"),
        _field("website", "website", "Your website"),
        _field("seats", "number", "How many seats do you need?"),
        _field("birthday", "date", "Your birthday", structure="YYYY-MM-DD", separator="-"),
        _choice_field("plan", "multiple_choice", "Which plan are you on?", _PLANS),
        _choice_field("interests", "multiple_choice", "What are you interested in?", _INTERESTS),
        _field("logo", "file_upload", "Upload your logo"),
        _field("tip", "payment", "Leave a tip", price={"type": "variable", "value": "5", "currency": "USD"}),
        _field("terms", "legal", "Do you accept the terms?"),
    ]
    fields[10]["properties"]["allow_multiple_selection"] = True
    return {
        "id": FORM_ID,
        "type": "quiz",
        "title": "crmhub sandbox NPS survey",
        "workspace": {"href": "http://sandbox/workspaces/crmhub"},
        "theme": {"href": "http://sandbox/themes/default"},
        "settings": {
            "language": "en",
            "is_public": True,
            "progress_bar": "proportion",
            "show_progress_bar": True,
        },
        "hidden": list(HIDDEN_FIELDS),
        "fields": fields,
        "created_at": iso_seconds(created),
        "last_updated_at": iso_seconds(created),
        "_links": {"display": f"https://form.typeform.com/to/{FORM_ID}"},
    }


def _answer(form_field: dict[str, Any], value_type: str, value: Any) -> dict[str, Any]:
    head = {"id": form_field["id"], "type": form_field["type"], "ref": form_field["ref"]}
    return {"field": head, "type": value_type, value_type: value}


@dataclass
class Response:
    """One stored response: when it was submitted and its JSON."""

    token: str
    landed_at: int
    submitted_at: int | None
    body: dict[str, Any]


@dataclass
class TypeformStore:
    """All forms and their responses, each list ascending by submission (or landing) time."""

    seed: int
    forms: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, list[Response]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"typeform:{self.seed}")

    def add_form(self, form: dict[str, Any]) -> None:
        """Register a form definition."""
        self.forms[form["id"]] = form
        self.responses.setdefault(form["id"], [])

    def new_response(self, form_id: str, person: Person, submitted: int, nps: int | None = None) -> Response:
        """A response of `person`, answering every question type (or abandoned part-way)."""
        rng = self.rng
        by_ref = {f["ref"]: f for f in self.forms[form_id]["fields"]}
        score = (
            nps if nps is not None else rng.choices(range(11), weights=[1, 1, 1, 1, 2, 2, 3, 5, 8, 8, 6])[0]
        )
        consent = rng.random() < 0.7
        answers = [
            _answer(by_ref["nps"], "number", score),
            _answer(by_ref["consent"], "boolean", consent),
            _answer(by_ref["name"], "text", f"{person.first} {person.last}"),
            _answer(by_ref["email"], "email", person.variants.get("typeform.email", person.email).strip()),
        ]
        if "typeform.phone" in person.variants:
            answers.append(_answer(by_ref["phone"], "phone_number", person.phone_e164))
        if rng.random() < 0.4:
            answers.append(
                _answer(by_ref["feedback"], "text", rng.choice(["Love it", "Too pricey", "More SMS, please"]))
            )
        if rng.random() < 0.3:
            answers.append(_answer(by_ref["website"], "url", f"https://{person.company.lower()}.example"))
        answers.append(_answer(by_ref["seats"], "number", rng.randrange(1, 250)))
        if rng.random() < 0.5:
            born = dt.date(1960 + rng.randrange(45), 1 + rng.randrange(12), 1 + rng.randrange(28))
            answers.append(_answer(by_ref["birthday"], "date", born.isoformat()))
        plan_ref, plan_label = rng.choice(_PLANS)
        answers.append(
            _answer(by_ref["plan"], "choice", {"id": f"ch_{plan_ref}", "ref": plan_ref, "label": plan_label})
        )
        picked = rng.sample(_INTERESTS, rng.randrange(1, 3))
        answers.append(
            _answer(
                by_ref["interests"],
                "choices",
                {
                    "ids": [f"ch_{r}" for r, _ in picked],
                    "refs": [r for r, _ in picked],
                    "labels": [lbl for _, lbl in picked],
                },
            )
        )
        if rng.random() < 0.15:
            logo = f"https://api.typeform.com/forms/{form_id}/responses/r/fields/fld_logo/files/logo.png"
            answers.append(_answer(by_ref["logo"], "file_url", logo))
        if rng.random() < 0.1:
            tip = {
                "amount": "5.00",
                "last4": "4242",
                "name": f"{person.first} {person.last}",
                "success": True,
            }
            answers.append(_answer(by_ref["tip"], "payment", tip))
        answers.append(_answer(by_ref["terms"], "boolean", True))
        completed = rng.random() >= 0.05
        if not completed:
            answers = answers[:2]
        token = random_id(rng, "", 32).lower()
        landed = submitted - rng.randrange(30, 600)
        body: dict[str, Any] = {
            "landing_id": token,
            "token": token,
            "response_id": token,
            "response_type": "completed" if completed else "partial",
            "landed_at": iso_seconds(landed),
            "submitted_at": iso_seconds(submitted) if completed else None,
            "metadata": {
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                "platform": rng.choice(["other", "mobile"]),
                "referer": f"https://form.typeform.com/to/{form_id}",
                "network_id": random_id(rng, "", 10).lower(),
                "browser": "default",
            },
            "hidden": {
                "user_id": person.user_id,
                "email": person.variants.get("typeform.email", person.email),
            },
            "calculated": {"score": score},
            "variables": [{"key": "score", "type": "number", "number": score}],
            "answers": answers,
        }
        response = Response(token, landed, submitted if completed else None, body)
        self.responses[form_id].append(response)
        return response

    def counts(self) -> dict[str, int]:
        """Forms and responses held."""
        return {"forms": len(self.forms), "responses": sum(len(r) for r in self.responses.values())}
