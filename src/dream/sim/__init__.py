"""Simulators that the built-in world models were trained on and are evaluated against.

Importing this package is cheap; each simulator imports its third-party dependencies
only when an environment is made (``pip install 'dream-engine[sim]'``).
"""

from dream.sim.pusht import (
    EXAMPLE_SEED_OFFSET,
    OBS_SIZE,
    TEST_SEED_OFFSET,
    TRAIN_SEED_OFFSET,
    VAL_SEED_OFFSET,
    WORKSPACE_SIZE,
    PushTEpisodeData,
    PushTSim,
    generate_episode,
    replay_actions,
)

__all__ = [
    "EXAMPLE_SEED_OFFSET",
    "OBS_SIZE",
    "TEST_SEED_OFFSET",
    "TRAIN_SEED_OFFSET",
    "VAL_SEED_OFFSET",
    "WORKSPACE_SIZE",
    "PushTEpisodeData",
    "PushTSim",
    "generate_episode",
    "replay_actions",
]
