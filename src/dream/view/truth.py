"""Ground truth for rows of `frames_from_lerobot`: the episode's real frames after the start frame.

A LeRobot row's source metadata names its dataset (local folder or Hub repo id), episode,
camera, start frame and timestamp; the frames the model had to predict are the camera's
next `frames` video frames. They are decoded once per request (the viewer caches the
result), then fitted to the rollout's resolution with the same scale-to-cover and
centre-crop the engine applied to the start frame (`dream.inputs.fit_frame`), so the two
videos compare pixel for pixel.
"""

from __future__ import annotations

import math
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
        self._sources: dict[tuple[str, str], LeRobotSource] = {}
        self._lock = threading.Lock()

    def _source(self, dataset: str, camera: str) -> LeRobotSource:
        from dream.io.sources.lerobot import LeRobotSource

        key = (dataset, camera)
        with self._lock:
            if key not in self._sources:
                self._sources[key] = LeRobotSource(dataset, camera=camera)
            return self._sources[key]

    def frames(self, source_meta: Mapping[str, Any], *, count: int, resolution: tuple[int, int]) -> np.ndarray:
        """uint8 (count, H, W, 3): the start frame and the next count-1 real frames of the row's episode.

        Raises ValueError naming the dataset / episode when they cannot be read, or when
        the episode has fewer frames than the rollout.
        """
        import numpy as np

        from dream.inputs import fit_frame
        from dream.io._records import require

        dataset, camera = str(source_meta["dataset"]), str(source_meta["camera"])
        episode_index, start = int(source_meta["episode_index"]), int(source_meta["start_frame_index"])
        src = self._source(dataset, camera)
        episode = next((ep for ep in src.episodes if ep.index == episode_index), None)
        if episode is None:
            raise ValueError(f"{dataset}: no episode {episode_index}")
        if not src.camera_is_video or episode.video_file is None:
            raise ValueError(f"{dataset}: camera {camera!r} is not a video; ground truth needs a video camera")
        if start + count > episode.length:
            raise ValueError(f"{dataset}: episode {episode_index} has {episode.length} frames; the rollout needs "
                             f"{count} from frame {start}")
        timestamp = source_meta.get("timestamp")
        base = episode.video_from_s + (float(timestamp) if timestamp is not None else start / src.fps)
        targets = [base + k / src.fps for k in range(count)]
        tolerance = 0.5 / src.fps
        av = require("av", "Ground-truth frames (video decoding)")
        found: list[Any] = [None] * count
        gaps = [math.inf] * count
        with av.open(str(src.files.path(episode.video_file))) as container:
            stream = container.streams.video[0]
            container.seek(max(0, int(base / stream.time_base)), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                k = round((t - base) * src.fps)
                if 0 <= k < count and abs(t - targets[k]) < gaps[k]:
                    found[k], gaps[k] = frame.to_ndarray(format="rgb24"), abs(t - targets[k])
                if t > targets[-1] + tolerance:
                    break
        missing = [k for k in range(count) if found[k] is None or gaps[k] > tolerance]
        if missing:
            raise ValueError(f"{dataset}: episode {episode_index} video has no frame at t={targets[missing[0]]:.3f} s")
        return np.stack([fit_frame(f, resolution) for f in found])
