"""Tables for people: whole values on a terminal's width, whole lines when piped."""

from __future__ import annotations

import subprocess
import sys

_PRINT_A_TABLE = """
from rich.table import Table
from crmhub.cli._output import print_table
table = Table("field", "type", "label")
table.add_row("stripe_subscription_items_data_price_recurring_interval", "enum", "Price interval " * 6)
print_table(table)
"""


def _piped(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PRINT_A_TABLE],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return done.stdout.splitlines()


def test_a_piped_table_keeps_each_row_on_one_line_for_grep() -> None:
    lines = [line for line in _piped({"PATH": ""}) if "stripe_" in line]
    assert len(lines) == 1 and "stripe_subscription_items_data_price_recurring_interval enum" in lines[0]


def test_a_narrow_width_still_folds_values_whole_rather_than_cutting_them() -> None:
    lines = _piped({"PATH": "", "COLUMNS": "60"})
    # The name's pieces start the lines after the header, in order: folded, none of it cut.
    first_column = "".join(line.split(" ", 1)[0] for line in lines[1:])
    assert first_column == "stripe_subscription_items_data_price_recurring_interval"
