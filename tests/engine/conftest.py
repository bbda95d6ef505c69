from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _shift_family(shift_family: None) -> None:
    """Every test here runs with the tiny shift runner family registered."""
