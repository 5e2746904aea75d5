"""Compiled JMESPath lookups: plain key/index chains run as a loop, anything else through jmespath."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

__all__ = ["Lookup", "PathFailed", "compile_path"]

Lookup = Callable[[Any], Any]
Step = str | int


class PathFailed(ValueError):
    """A valid expression that failed on one payload: a function given a value of another type."""


def compile_path(expression: str) -> Lookup:
    """A function reading `expression` from a payload, as `jmespath.search` would; raises PathFailed."""
    compiled = jmespath.compile(expression)
    steps = _steps(compiled.parsed)
    if steps is None:

        def search(payload: Any) -> Any:
            try:
                return compiled.search(payload)
            except JMESPathError as exc:  # `length(phone)` on a null phone, `to_number` of a list...
                raise PathFailed(" ".join(str(exc).split())) from None

        return search
    # jmespath's tree walk costs a few µs per rule and record; most rules are `a.b[0].c`.
    return lambda payload: _follow(payload, steps)


def _follow(value: Any, steps: tuple[Step, ...]) -> Any:
    for step in steps:
        if type(step) is str:
            if not isinstance(value, dict | Mapping):
                return None
            value = value.get(step)
        else:
            if not isinstance(value, list):
                return None
            try:
                value = value[step]  # type: ignore[index]
            except IndexError:
                return None
        if value is None:
            return None
    return value


def _steps(node: Mapping[str, Any]) -> tuple[Step, ...] | None:
    kind = node.get("type")
    if kind == "field":
        return (str(node["value"]),)
    children = node.get("children") or []
    if kind == "subexpression":
        steps: tuple[Step, ...] = ()
        for child in children:
            more = _steps(child)
            if more is None:
                return None
            steps += more
        return steps
    if kind == "index_expression" and children:
        head = _steps(children[0])
        rest = children[1:]
        if head is None or not all(c.get("type") == "index" for c in rest):
            return None
        return head + tuple(int(c["value"]) for c in rest)
    return None
