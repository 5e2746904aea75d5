"""Automatic fields: flatten a record payload into named scalar leaves, with a plan cached per path.

Flattening rules (what a user sees as fields):
- nested objects become dotted paths; empty objects give nothing; `metadata.*` is flattened too;
- a list of scalars is one text value joined with `;` (HubSpot's multi-value convention); an empty
  list is no value; a list of objects is skipped, except the hoists below;
- Stripe list objects (`{"object": "list", "data": [...]}`) are skipped, except that a subscription's
  first item lends its `price`, `plan`, `quantity` and current period (`stripe_subscription_price_
  unit_amount`, `stripe_subscription_current_period_end`): nearly every subscription has one item,
  and plan and renewal date are what people segment on;
- paths matching `SKIPPED_PATHS` (ids, references, secrets, URLs) are skipped unless
  `skip_builtin = false`; then `exclude` patterns skip, and only paths matching `include` are kept;
- a path a mapping rule reads for the same stream is left to the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

import jmespath

from field_mapping.config import AutoSourceConfig
from field_mapping.convert import as_text
from field_mapping.model import FieldValue, Origin
from field_mapping.naming import field_name
from field_mapping.registry import FieldState
from field_mapping.sources import SKIPPED_PATHS
from field_mapping.types import FieldType

__all__ = ["SKIP", "AutoLeaf", "Claim", "DictFlattener", "Leaves", "Selector", "join_scalars", "json_path"]

# (candidate name, path key) -> the unique name granted.
Claim = Callable[[str, str], str]
Leaves = list[tuple["AutoLeaf", Any]]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCALARS = (str, int, float, bool, Decimal)
_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
# Marks a value that gives no field at all (unlike None, which is a null value of a field).
SKIP = object()

# Stripe subscriptions: the first item's objects lifted to the subscription's own level.
HOISTS: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("stripe", "subscriptions"): {
        "items": frozenset({"price", "plan", "quantity", "current_period_start", "current_period_end"})
    },
}


@dataclass(slots=True)
class AutoLeaf:
    """One scalar path of a stream, named once, with what the mapper learnt about it."""

    name: str
    origin: Origin
    hint: str
    declared: FieldType | None
    enum_max: int
    enum_max_length: int
    # The field, once it exists; only this leaf creates a field of this name.
    state: FieldState | None = None
    # The previous raw value and its typed FieldValue, reused when the next record repeats it.
    last: FieldValue | None = None
    last_raw: Any = None
    # Seen only as null while no field of its name exists: its nulls are dropped early.
    absent: bool = False


class Selector:
    """Include, exclude and built-in skip patterns of one source, plus the paths rules cover."""

    def __init__(self, settings: AutoSourceConfig, covered: Iterable[str]) -> None:
        self.skip = (*(SKIPPED_PATHS if settings.skip_builtin else ()), *settings.exclude)
        self.include = tuple(settings.include)
        self.covered = [jmespath.compile(path).parsed for path in covered]

    def skipped(self, glob: str) -> bool:
        """True when `glob` (or the subtree under it) is not wanted."""
        return any(fnmatchcase(glob, pattern) for pattern in self.skip)

    def kept_leaf(self, glob: str, path: str) -> bool:
        """True when the scalar at `glob` becomes a field (included and not read by a rule)."""
        if not any(fnmatchcase(glob, pattern) for pattern in self.include):
            return False
        return not self.covered or jmespath.compile(path).parsed not in self.covered


def json_path(parent: str, key: str) -> str:
    """`parent.key` as JMESPath, quoting keys that are not identifiers."""
    part = key if _IDENTIFIER.fullmatch(key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{parent}.{part}" if parent else part


def join_scalars(items: list[Any]) -> Any:
    """A list of scalars as `a;b`; None for an empty list; `SKIP` for lists holding objects."""
    if not items:
        return None
    if all(isinstance(item, _SCALARS) for item in items):
        return ";".join(as_text(item) for item in items)
    return SKIP


class _Node:
    """A path of the payload tree with its decisions made once: skip it, or the leaf it becomes."""

    __slots__ = ("allowed", "children", "glob", "hoist", "leaf", "leaf_done", "parts", "path", "skipped")

    def __init__(
        self,
        glob: str,
        path: str,
        parts: tuple[str, ...],
        *,
        skipped: bool = False,
        allowed: frozenset[str] | None = None,
    ) -> None:
        self.glob = glob
        self.path = path
        self.parts = parts
        self.skipped = skipped
        self.allowed = allowed
        self.children: dict[str, _Node] = {}
        self.hoist: _Node | None = None
        self.leaf: AutoLeaf | None = None
        self.leaf_done = False


class DictFlattener:
    """Flattens one stream's payloads from `root` (e.g. HubSpot `properties`) into named leaves."""

    def __init__(
        self,
        *,
        source: str,
        stream: str,
        root: str,
        prefix: str,
        settings: AutoSourceConfig,
        covered: Iterable[str],
        claim: Claim,
        declared: Mapping[str, FieldType],
    ) -> None:
        self.source, self.stream, self.root, self.prefix = source, stream, root, prefix
        self.settings = settings
        self.select = Selector(settings, covered)
        self.claim = claim
        self.declared = declared
        self.stripe_lists = source == "stripe"
        self.hoists = HOISTS.get((source, stream), {})
        self.top = _Node("", root, ())

    def leaves(self, payload: Mapping[str, Any]) -> Leaves:
        """Every kept scalar of `payload` with its leaf, nulls included."""
        body = payload.get(self.root) if self.root else payload
        out: Leaves = []
        if isinstance(body, dict | Mapping):
            self._walk(body, self.top, out)
        return out

    def _walk(self, body: Mapping[str, Any], node: _Node, out: Leaves) -> None:
        # The hot loop of automatic fields: cheap type checks first, no helper calls once a path is known.
        children = node.children
        for key, value in body.items():
            child = children.get(key)
            if child is None:
                child = children[key] = self._child(node, key)
            if child.skipped:
                continue
            if type(value) not in _LEAF_TYPES:
                # The Stripe SDK decodes objects as OrderedDict: any mapping is an object here.
                if isinstance(value, dict | Mapping):
                    self._walk_object(value, child, out)
                    continue
                if isinstance(value, list | tuple):
                    value = join_scalars(list(value))
                    if value is SKIP:
                        continue
            leaf = child.leaf if child.leaf_done else self._leaf(child)
            if leaf is not None and not (value is None and leaf.absent):
                out.append((leaf, value))

    def _walk_object(self, value: Mapping[str, Any], node: _Node, out: Leaves) -> None:
        if node.hoist is not None:
            data = value.get("data")
            if isinstance(data, list) and data and isinstance(data[0], dict | Mapping):
                self._walk(data[0], node.hoist, out)
        elif value and not (self.stripe_lists and value.get("object") == "list"):
            self._walk(value, node, out)

    def _child(self, node: _Node, key: str) -> _Node:
        glob = f"{node.glob}.{key}" if node.glob else key
        parts = (*node.parts, key)
        skipped = (node.allowed is not None and key not in node.allowed) or self.select.skipped(glob)
        child = _Node(glob, json_path(node.path, key), parts, skipped=skipped)
        hoisted = self.hoists.get(glob)
        if hoisted is not None:
            # Hoisted leaves are named and matched as if they sat on the parent: `price.unit_amount`.
            child.hoist = _Node(node.glob, f"{child.path}.data[0]", node.parts, allowed=hoisted)
        return child

    def _leaf(self, node: _Node) -> AutoLeaf | None:
        node.leaf_done = True
        if not self.select.kept_leaf(node.glob, node.path):
            return None
        origin = Origin("auto", self.source, self.stream, node.path)
        name = self.claim(field_name(self.prefix, node.parts), f"{self.source}.{self.stream}:{node.path}")
        settings = self.settings
        node.leaf = AutoLeaf(
            name,
            origin,
            node.parts[-1],
            self.declared.get(node.glob),
            settings.enum_max_distinct,
            settings.enum_max_length,
        )
        return node.leaf
