"""The annotated example configuration that ships with crmhub."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_NAME = "config.example.toml"


def example_config_text() -> str:
    """Text of config.example.toml, from the installed package or, in a checkout, the repository root."""
    packaged = resources.files("crmhub").joinpath(_NAME)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / _NAME).read_text(encoding="utf-8")
