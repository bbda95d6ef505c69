"""Suite-wide fixtures: a clean DREAM_* environment for every test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_dream_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's DREAM_* variables (API keys, base URLs, weights dirs)."""
    for name in list(os.environ):
        if name.startswith("DREAM_"):
            monkeypatch.delenv(name, raising=False)
