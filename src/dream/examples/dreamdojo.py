"""GR-1 example inputs for the `dreamdojo-2b-gr1` spec (sdk-surface §19).

`dreamdojo_grasp()` is synthetic and needs no I/O. `dreamdojo_grasp_real()` loads a
real GR-1 teleop episode (`gr1_grasp_episode.npz`: start_frame (480, 640, 3) uint8,
actions (48, 384) float32 with the 29 GR-1 dims first and zeros after) from the
package's fixtures, or from ``DREAM_EXAMPLES_DIR`` when the package does not carry it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

GR1_FRAME_SHAPE = (480, 640, 3)
GR1_ACTION_FRAMES = 48
GR1_ACTION_DIM = 384
GR1_FIXTURE = "gr1_grasp_episode.npz"

__all__ = ["GR1_ACTION_DIM", "GR1_ACTION_FRAMES", "GR1_FRAME_SHAPE", "dreamdojo_grasp", "dreamdojo_grasp_real"]


def dreamdojo_grasp() -> tuple[np.ndarray, np.ndarray]:
    """A deterministic synthetic (start_frame, actions) pair shaped like a GR-1 input.

    Frame: red ramps across columns, green down rows, blue 128, a white 3-px crosshair
    at the centre. Actions: 0.05·sin(t + φ_j) for t in [0, 2π] over 48 steps and phases
    φ in [0, π] over the 384 dims.
    """
    import numpy as np

    h, w, _ = GR1_FRAME_SHAPE
    frame = np.empty(GR1_FRAME_SHAPE, np.uint8)
    frame[:, :, 0] = np.linspace(0, 255, w, dtype=np.float32).astype(np.uint8)[None, :]
    frame[:, :, 1] = np.linspace(0, 255, h, dtype=np.float32).astype(np.uint8)[:, None]
    frame[:, :, 2] = 128
    frame[h // 2 - 1 : h // 2 + 2, :, :] = 255
    frame[:, w // 2 - 1 : w // 2 + 2, :] = 255
    t = np.linspace(0, 2 * np.pi, GR1_ACTION_FRAMES, dtype=np.float32)[:, None]
    phi = np.linspace(0, np.pi, GR1_ACTION_DIM, dtype=np.float32)[None, :]
    actions = (0.05 * np.sin(t + phi)).astype(np.float32)
    return frame, actions


def _fixture_path() -> Path | None:
    packaged = resources.files("dream.examples").joinpath("_fixtures", GR1_FIXTURE)
    if packaged.is_file():
        return Path(str(packaged))
    env_dir = os.environ.get("DREAM_EXAMPLES_DIR")
    if env_dir and (Path(env_dir) / GR1_FIXTURE).is_file():
        return Path(env_dir) / GR1_FIXTURE
    return None


def dreamdojo_grasp_real() -> tuple[np.ndarray, np.ndarray]:
    """A real GR-1 teleop episode: (start_frame uint8 (480, 640, 3), actions float32 (48, 384)).

    Raises FileNotFoundError saying where to put the fixture when it is not available.
    """
    import numpy as np

    path = _fixture_path()
    if path is None:
        raise FileNotFoundError(
            f"the real GR-1 example episode ({GR1_FIXTURE}) is not bundled with this build: NVIDIA's GR-1 "
            "data cannot be redistributed here. Put an npz with keys start_frame (480, 640, 3) uint8 and "
            f"actions (48, 384) float32 at $DREAM_EXAMPLES_DIR/{GR1_FIXTURE}, or use dreamdojo_grasp() "
            "for a synthetic input."
        )
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["start_frame"], np.uint8), np.asarray(data["actions"], np.float32)
