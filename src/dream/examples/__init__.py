"""Example inputs bundled with the package (offline).

* Push-T (the built-in ``pusht-96`` spec): held-out simulator episodes with their
  ground-truth frames — `pusht_episode`, `pusht_episodes`, `write_pusht_dir`.
* GR-1 (``dreamdojo-2b-gr1``): `dreamdojo_grasp` (synthetic), `dreamdojo_grasp_real`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "dreamdojo_grasp": "dream.examples.dreamdojo",
    "dreamdojo_grasp_real": "dream.examples.dreamdojo",
    "pusht_episode": "dream.examples.pusht",
    "pusht_episodes": "dream.examples.pusht",
    "PushTEpisode": "dream.examples.pusht",
    "write_pusht_dir": "dream.examples.pusht_files",
}

__all__ = list(_LAZY)
_SUBMODULES = ("dreamdojo", "pusht", "pusht_files")  # `dream.examples.dreamdojo` without importing it by hand


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"dream.examples.{name}")
    raise AttributeError(f"module 'dream.examples' has no attribute {name!r}")
