"""Printing for commands: rich for people, plain JSON for scripts, problems on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Wide enough that no table reaches it: off a terminal a table takes its natural width.
_PIPED_WIDTH = 400
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    """Write `value` as JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_table(table: Table) -> None:
    """Print `table` so every value stays whole on a narrow terminal.

    No rules and one space between columns leave the values the width, and a value longer than
    its column folds onto the next line instead of being cut to `stripe_cha…`.
    """
    table.box = None
    table.padding = (0, 1, 0, 0)
    for column in table.columns:
        column.overflow = "fold"
    # Off a terminal rich assumes 80 columns and folds long field names: `| grep` would see halves.
    if console.is_terminal or os.environ.get("COLUMNS"):
        console.print(table)
        return
    width = console.width
    console.width = _PIPED_WIDTH  # for this table only: rules and panels keep their 80 columns
    try:
        console.print(table)
    finally:
        console.width = width


def print_error(message: str) -> None:
    """Print `error: message` on stderr, taking the message literally (no markup)."""
    errors.print(Text.assemble(("error: ", "bold red"), message))


def print_note(message: str) -> None:
    """Print `note: message` on stderr, taking the message literally (no markup)."""
    errors.print(Text.assemble(("note: ", "bold yellow"), message))
