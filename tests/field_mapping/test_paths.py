"""Compiled rule paths read exactly what jmespath reads."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import jmespath
import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_mapping.paths import compile_path

PAYLOAD: dict[str, Any] = {
    "status": "active",
    "items": {"data": [{"price": {"nickname": "Pro", "unit_amount": 2000}}, {"price": None}]},
    "properties": {"lifecyclestage": "lead", "plan-tier": "gold"},
    "tags": ["a", "b"],
    "answers": [{"field": {"ref": "nps"}, "number": 9}],
    "empty": None,
    "ordered": OrderedDict(a=1),
}

PATHS = [
    "status",
    "items.data[0].price.nickname",
    "items.data[1].price.nickname",
    "items.data[5].price",
    "items.data[-1].price",
    'properties."plan-tier"',
    "tags[1]",
    "tags[0].x",
    "status.x",
    "status[0]",
    "empty.x",
    "missing",
    "ordered.a",
    "answers[?field.ref=='nps'] | [0].number",
    "tags[*]",
]


@pytest.mark.parametrize("path", PATHS)
def test_same_as_jmespath(path: str) -> None:
    assert compile_path(path)(PAYLOAD) == jmespath.search(path, PAYLOAD)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=12,
)
_PATH = st.lists(st.sampled_from(["a", "b", "c", "[0]", "[1]", "[-1]"]), min_size=1, max_size=4).map(
    lambda steps: (
        "".join(s if s.startswith("[") or i == 0 else f".{s}" for i, s in enumerate(steps))
        if not steps[0].startswith("[")
        else "a" + "".join(s if s.startswith("[") else f".{s}" for s in steps)
    )
)


@given(_JSON, _PATH)
def test_same_as_jmespath_on_any_payload(payload: Any, path: str) -> None:
    assert compile_path(path)(payload) == jmespath.search(path, payload)
