"""Policy evaluation in imagination: Gymnasium environments backed by a world model.

    import dream
    from dream.envs import WorldModelEnv

    env = WorldModelEnv(dream.Client().models.get("pusht-96"))
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

* `WorldModelEnv` / `WorldModelVectorEnv` (need ``gymnasium``: the ``[envs]`` extra):
  one episode, or N stepped in one fused engine call; embedded or over a ``dream serve``
  session (`dream.envs.env`).
* `pusht_coverage(frame)`: gym-pusht's coverage of the goal zone estimated from a 96×96
  frame; `block_coverage(pose)` the same from a block pose; `PushTCoverage` the reward
  object the environments use for pusht-96 (`dream.envs.pusht`, numpy only).

No torch is imported here.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dream.envs.env import ResetNeededError, WorldModelEnv, WorldModelVectorEnv
    from dream.envs.pusht import PushTCoverage, block_coverage, pusht_coverage, pusht_reward

__all__ = [
    "PushTCoverage",
    "ResetNeededError",
    "WorldModelEnv",
    "WorldModelVectorEnv",
    "block_coverage",
    "pusht_coverage",
    "pusht_reward",
    "register",
]

_LAZY = {
    "WorldModelEnv": "dream.envs.env",
    "WorldModelVectorEnv": "dream.envs.env",
    "ResetNeededError": "dream.envs.env",
    "PushTCoverage": "dream.envs.pusht",
    "block_coverage": "dream.envs.pusht",
    "pusht_coverage": "dream.envs.pusht",
    "pusht_reward": "dream.envs.pusht",
}


def register() -> None:
    """Register ``dream/WorldModel-v0`` and ``dream/WorldModelVector-v0`` with gymnasium, so that
    ``gymnasium.make("dream.envs:dream/WorldModel-v0", model="pusht-96")`` works (the
    ``module:`` prefix imports this package first). Done on import when gymnasium is loaded."""
    import gymnasium

    if "dream/WorldModel-v0" not in gymnasium.registry:
        gymnasium.register("dream/WorldModel-v0", entry_point="dream.envs.env:WorldModelEnv", disable_env_checker=True)
    if "dream/WorldModelVector-v0" not in gymnasium.registry:
        gymnasium.register("dream/WorldModelVector-v0", vector_entry_point="dream.envs.env:WorldModelVectorEnv")


if "gymnasium" in sys.modules:  # registering costs nothing then; otherwise dream.envs.env registers on import
    register()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dream.envs' has no attribute {name!r}")
    if module == "dream.envs.env":
        try:
            importlib.import_module("gymnasium")
        except ImportError as exc:
            raise ImportError(f"dream.envs.{name} needs gymnasium: pip install 'dream-engine[envs]' ({exc})") from exc
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
