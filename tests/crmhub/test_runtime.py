"""The process settings every crmhub command starts with."""

from __future__ import annotations

import gc
import importlib

import pytest

from crmhub.runtime import THRESHOLDS

# The module, not the Typer app that `crmhub.cli` exports under the same name.
app_module = importlib.import_module("crmhub.cli.app")


def test_every_command_collects_garbage_less_often_and_not_over_start_up_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[tuple[int, int, int], int]] = []
    monkeypatch.setattr(app_module, "app", lambda: seen.append((gc.get_threshold(), gc.get_freeze_count())))
    before = gc.get_threshold()
    try:
        app_module.main()
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    [(threshold, frozen)] = seen
    assert threshold == THRESHOLDS
    assert frozen > 0
