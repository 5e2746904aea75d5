"""Reading PostgreSQL's EXPLAIN (ANALYZE, FORMAT JSON) plans in tests."""

from __future__ import annotations

from typing import Any


def rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows the plan's scans of `table` and of its indexes produced or filtered out, over all their loops."""
    index = str(plan.get("Index Name", ""))
    own = (
        plan.get("Relation Name") == table
        or index == f"pk_{table}"
        or index.startswith((f"uq_{table}_", f"ix_{table}_"))
    )
    read = (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"] if own else 0
    return read + sum(rows_read(child, table) for child in plan.get("Plans", ()))
