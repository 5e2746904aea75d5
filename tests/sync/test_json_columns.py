"""JSON columns: orjson writes what the stdlib would, and the stdlib takes what orjson cannot match."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sync.store.engine import to_json


def test_ascii_documents_read_back_the_same() -> None:
    value = {"id": "cus_1", "n": 3, "x": 1.5, "ok": True, "none": None, "list": [1, "a"], "m": {"k": "v"}}
    assert json.loads(to_json(value)) == value


def test_non_ascii_text_is_written_with_the_stdlib_escapes_erasure_searches() -> None:
    value = {"name": "Jürgen Müller", "city": "東京"}
    assert to_json(value) == json.dumps(value)


@pytest.mark.parametrize("value", [{"big": 2**70}, {1: "int key"}])
def test_what_orjson_refuses_goes_to_the_stdlib(value: dict[object, object]) -> None:
    assert to_json(value) == json.dumps(value)


def test_values_the_stdlib_refuses_still_fail() -> None:
    with pytest.raises(TypeError):
        to_json({"at": datetime(2026, 12, 2, tzinfo=UTC)})
