"""`python -m evaluators.classifier.build_default` names a missing training package at once, in one line, not
after its minutes of training (the build's last step draws the dev PR plot: matplotlib, the `plots` extra)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from evaluators.classifier import build_default


def test_a_missing_training_package_is_one_line_before_any_work(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec

    def without_matplotlib(name: str, *args: Any) -> Any:
        return None if name == "matplotlib" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_matplotlib)
    assert build_default.main(["--datasets", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err == "build_default: matplotlib not installed: pip install -e '.[hf,plots]'\n"
