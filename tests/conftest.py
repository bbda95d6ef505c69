"""Suite-wide fixtures: a clean DREAM_* environment for every test."""

from __future__ import annotations

import os

import pytest

# As `dream.engine.threads` does for users: OpenMP threads sleep rather than spin while
# they wait. Set before anything imports torch, which reads it once; spinning threads
# make every test slow on a machine whose cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def clean_dream_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's DREAM_* variables (API keys, base URLs, weights dirs)."""
    for name in list(os.environ):
        if name.startswith("DREAM_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shift_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the tiny `shift-test` runner family and its specs for one test, then remove them."""
    from dream.engine import runner, specs
    from tests.shift_runner import shift_spec

    monkeypatch.setitem(runner.RUNNERS, "shift-test", "tests.shift_runner:ShiftRunner")
    for s in (shift_spec(), shift_spec("shift-seeded", uses_seed=True), shift_spec("shift-noweights"),
              shift_spec("shift-chunk4", chunk_size=4)):
        monkeypatch.setitem(specs._REGISTRY, s.slug, s)
