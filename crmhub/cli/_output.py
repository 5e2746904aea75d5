"""Printing for commands: rich for people, plain JSON for scripts, problems on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(value: Any) -> None:
    """Write `value` as JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_error(message: str) -> None:
    """Print `error: message` on stderr, taking the message literally (no markup)."""
    errors.print(Text.assemble(("error: ", "bold red"), message))


def print_note(message: str) -> None:
    """Print `note: message` on stderr, taking the message literally (no markup)."""
    errors.print(Text.assemble(("note: ", "bold yellow"), message))
