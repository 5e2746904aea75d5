"""A rule's type is the admin's choice: a value that does not fit it is left out, never typed otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from field_mapping import FieldMappingConfig, FieldType, Mapper
from tests.field_mapping.conftest import record


def _rule(ftype: str, transforms: list[str]) -> dict[str, Any]:
    return {
        "source": "stripe",
        "stream": "customers",
        "path": "metadata.v",
        "field": "v",
        "type": ftype,
        "transforms": transforms,
    }


@pytest.mark.parametrize(
    ("ftype", "transforms", "raw"),
    [
        ("integer", [], "forty"),
        ("boolean", [], "yes"),
        ("datetime", [], "last week"),
        ("date", [], "last week"),
        ("datetime", ["unix_to_datetime"], "2026-01-02T03:04:05Z"),
        ("integer", ["e164"], "555"),  # a flagged phone is text, which an integer field cannot hold
    ],
)
def test_a_value_that_does_not_fit_the_rule_leaves_the_field_empty_with_a_problem(
    ftype: str, transforms: list[str], raw: str
) -> None:
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [_rule(ftype, transforms)]}))
    mapped = mapper.map_record(record("stripe", "customers", {"id": "cus_1", "metadata": {"v": raw}}))
    value = mapped.values["v"]
    assert (value.type, value.value) == (FieldType(ftype), None)
    [problem] = mapped.problems
    assert problem.field == "v" and raw in problem.raw and "left out of the field" in problem.reason
    assert mapped.widenings == ()
    assert {d.name: d.type for d in mapper.definitions()} == {"v": FieldType(ftype)}


def test_a_later_rule_of_the_stream_still_fills_a_field_an_earlier_one_could_not() -> None:
    first = _rule("integer", [])
    second = {**_rule("integer", []), "path": "metadata.w"}
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [first, second]}))
    payload = {"id": "cus_1", "metadata": {"v": "forty", "w": "40"}}
    mapped = mapper.map_record(record("stripe", "customers", payload))
    assert mapped.values["v"].value == 40


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("length(metadata.v)", {"metadata": {}}),  # length() of a null
        ("join(', ', metadata.v)", {"metadata": {"v": [1, 2]}}),  # join() of numbers
    ],
)
def test_a_path_that_fails_on_one_record_leaves_the_field_empty_with_a_problem(
    path: str, payload: dict[str, Any]
) -> None:
    rule = {**_rule("string", []), "path": path}
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [rule]}))
    mapped = mapper.map_record(record("stripe", "customers", {"id": "cus_1", **payload}))
    assert mapped.values["v"].value is None
    [problem] = mapped.problems
    assert problem.raw.startswith(f"path {path!r} failed: In function") and "left out" in problem.reason
    # The next record, where the path works, fills the field.
    fine = mapper.map_record(record("stripe", "customers", {"id": "cus_2", "metadata": {"v": ["a", "b"]}}))
    assert fine.values["v"].value in ("2", "a, b") and fine.problems == ()
