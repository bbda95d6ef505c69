"""A small GR-1-shaped LeRobot dataset: 44-dim state and action, 20 fps video.

Built on the generic v3.0 factory (same videos and episode metadata), with the data files
rewritten to carry GR-1 vectors. Values are deterministic functions of (episode, frame)
so tests can recompute what a row must hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.io.io_support import make_lerobot_v3

GR1_DIM = 44
GR1_FPS = 20


def gr1_raw_action(episode: int, frame: int) -> np.ndarray:
    """A smooth joint trajectory: dim j moves by 0.002·(j % 7 + 1) per step from 0.1·(j % 5) − 0.2."""
    j = np.arange(GR1_DIM)
    return (0.1 * (j % 5) - 0.2 + 0.002 * (j % 7 + 1) * frame + 0.05 * episode).astype(np.float32)


def gr1_raw_state(episode: int, frame: int) -> np.ndarray:
    """The proprio state lags the command a little."""
    return (gr1_raw_action(episode, frame) - 0.01).astype(np.float32)


def make_gr1_lerobot(root: Path, lengths: list[int], *, episodes_per_file: int = 2) -> Path:
    """A LeRobot v3.0 tree shaped like NVIDIA's GR-1 teleop data (44-dim vectors, 20 fps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    make_lerobot_v3(root, lengths, episodes_per_file=episodes_per_file, fps=GR1_FPS)
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    for key in ("observation.state", "action"):
        info["features"][key] = {"dtype": "float32", "shape": [GR1_DIM], "names": None}
    info["robot_type"] = "fourier_gr1"
    info_path.write_text(json.dumps(info, indent=2))
    vec = pa.list_(pa.float32(), GR1_DIM)
    for path in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        eps = table.column("episode_index").to_pylist()
        frames = table.column("frame_index").to_pylist()
        actions = [gr1_raw_action(e, f).tolist() for e, f in zip(eps, frames, strict=True)]
        states = [gr1_raw_state(e, f).tolist() for e, f in zip(eps, frames, strict=True)]
        table = table.set_column(table.schema.get_field_index("action"), "action", pa.array(actions, type=vec))
        table = table.set_column(
            table.schema.get_field_index("observation.state"), "observation.state", pa.array(states, type=vec)
        )
        pq.write_table(table, path)
    return root
