from __future__ import annotations

import pytest

from dream.engine import specs
from dream.engine.runner import RUNNERS
from tests.shift_runner import shift_spec


@pytest.fixture(autouse=True)
def shift_family():
    RUNNERS["shift-test"] = "tests.shift_runner:ShiftRunner"
    for s in (shift_spec(), shift_spec("shift-seeded", uses_seed=True), shift_spec("shift-noweights"),
              shift_spec("shift-chunk4", chunk_size=4)):
        specs.register(s)
    yield
