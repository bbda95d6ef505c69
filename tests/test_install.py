"""The lean install: the base dependencies + [decode] run the built-in model, torch only in
the extras that import it. (`.ci/run` also installs base + [decode] into a fresh venv and
checks that `pip show torch` fails there.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# The demo's predict, as a user writes it, in a fresh interpreter.
PREDICT = """
import dream
from dream.examples import pusht_episode

ep = pusht_episode(0)
client = dream.Client()
rollout = client.models.get("pusht-96").predict(start_frame=ep.start_frame, actions=ep.actions)
assert rollout.frames.shape == (49, 96, 96, 3), rollout.frames.shape
rollout.save(sys.argv[1])
"""


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]).lower()


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_the_client_predicts_pusht_96_with_torch_unimportable(tmp_path: Path) -> None:
    # sys.modules["torch"] = None makes every `import torch` raise ImportError: the path
    # must neither need nor touch it (as in a venv without torch).
    code = "import sys\nsys.modules['torch'] = None\nsys.modules['diffusers'] = None\n" + PREDICT + (
        "assert [m.slug for m in client.models.list()][0] == 'pusht-96'\n"  # DreamDojo listed, inactive
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers') and sys.modules[m]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.mp4")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "r.mp4").stat().st_size > 0


def test_the_base_install_plus_decode_covers_the_pusht_96_path(tmp_path: Path) -> None:
    """Every third-party distribution the predict imports is a base dependency or [decode]'s."""
    code = "import sys\nbefore = set(sys.modules)\n" + PREDICT + textwrap.dedent(
        """
        import json
        from importlib.metadata import packages_distributions
        dists = packages_distributions()
        imported = {m.split('.')[0] for m in set(sys.modules) - before}
        third_party = sorted(
            {d for m in imported if m not in sys.stdlib_module_names for d in dists.get(m, [])} - {'dream-engine'}
        )
        print(json.dumps(third_party))
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.mp4")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    used = {_name(d) for d in json.loads(out.stdout)}
    project = _project()
    lean = {_name(r) for r in project["dependencies"]} | {_name(r) for r in project["optional-dependencies"]["decode"]}
    assert used - lean == set(), f"imported but not in the base install + [decode]: {sorted(used - lean)}"
    assert "safetensors" in used  # the weights are read with it


def test_torch_only_in_the_extras_that_import_it() -> None:
    project = _project()
    assert "torch" not in {_name(r) for r in project["dependencies"]}
    with_torch = sorted(
        extra for extra, reqs in project["optional-dependencies"].items() if "torch" in {_name(r) for r in reqs}
    )
    # [torch]: DreamDojo, dream pull/convert; [train]: training/learn_pusht.py.
    assert with_torch == ["torch", "train"]
    for extra in ("decode", "io", "server", "sessions", "sim", "ray", "postgres"):
        assert "torch" not in {_name(r) for r in project["optional-dependencies"][extra]}, extra
