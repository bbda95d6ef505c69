"""Ground truth for rows of `frames_from_lerobot`: the episode's real frames after the start frame.

A LeRobot row's source metadata names its dataset (local folder or Hub repo id), episode,
camera, start frame and timestamp; the frames the model had to predict are the camera's
next video frames, at the row's rate. They are decoded by the source itself
(`LeRobotSource.row_frames`, the ground truth of `dream eval`) on demand, then fitted to
the rollout's resolution with the scale-to-cover and centre-crop the engine applied to
the start frame (`dream.inputs.fit_frame`), so the two videos compare pixel for pixel.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from dream.io.sources.lerobot import LeRobotSource

__all__ = ["TRUTH_KEYS", "LeRobotTruth", "has_lerobot_truth"]

TRUTH_KEYS = ("dataset", "episode_index", "start_frame_index", "camera")


def has_lerobot_truth(source: Mapping[str, Any]) -> bool:
    """Whether a row's source metadata says where its real frames are."""
    return all(source.get(k) not in (None, "") for k in TRUTH_KEYS) and "codebase_version" in source


class LeRobotTruth:
    """Opens each dataset once and decodes a row's real frames on demand."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str, float | None], LeRobotSource] = {}
        self._lock = threading.Lock()

    def _source(self, dataset: str, camera: str, fps: float | None) -> LeRobotSource:
        from dream.io.sources.lerobot import LeRobotSource

        key = (dataset, camera, fps)
        with self._lock:
            if key not in self._sources:
                self._sources[key] = LeRobotSource(dataset, camera=camera, fps=fps)
            return self._sources[key]

    def frames(self, source_meta: Mapping[str, Any], *, count: int, resolution: tuple[int, int]) -> np.ndarray:
        """uint8 (count, H, W, 3): the row's start frame and the next count-1 real frames, at the row's rate.

        Decoding is `LeRobotSource.row_frames` (what `dream eval` compares with). Raises
        ValueError naming the dataset / episode when they cannot be read, or when the
        episode has fewer frames than the rollout.
        """
        import numpy as np

        from dream.inputs import fit_frame

        if source_meta.get("timestamp") is None:
            raise ValueError("the row's metadata has no timestamp (was the row read by frames_from_lerobot?)")
        fps = source_meta.get("fps")
        src = self._source(str(source_meta["dataset"]), str(source_meta["camera"]),
                           None if fps is None else float(fps))
        frames = src.row_frames(dict(source_meta), count)
        return np.stack([fit_frame(np.asarray(f, np.uint8), resolution) for f in frames])
