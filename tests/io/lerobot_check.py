"""Load a dataset RolloutSink.lerobot wrote with lerobot's own classes (run in .venv-lerobot).

    .venv-lerobot/bin/python tests/io/lerobot_check.py ROOT EXPECTED.npz

EXPECTED.npz holds, per episode i, `actions_i` (T, A) and `frames_i` (T, H, W, 3) uint8 (the
rollout's own decoded frames). Prints one JSON line of what it measured; exits non-zero
when a check fails.

The PyPI torchvision wheel is a CUDA build whose C++ ops cannot load next to the CPU
torch; lerobot's dataset code uses only torchvision's Python parts, so the two op schemas
torchvision's import registers fake kernels for are declared first (no kernel behind them).
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import torch

_ops = torch.library.Library("torchvision", "DEF")
_ops.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_ops.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
warnings.simplefilter("ignore")

from lerobot.datasets.compute_stats import compute_episode_stats  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402
from lerobot.datasets.streaming_dataset import StreamingLeRobotDataset  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> int:
    root, expected_path = sys.argv[1], sys.argv[2]
    expected = np.load(expected_path)
    n = len([k for k in expected.files if k.startswith("actions_")])
    ds = LeRobotDataset("dream/check", root=root, video_backend="torchcodec")
    camera = ds.meta.video_keys[0]
    out: dict = {"episodes": ds.num_episodes, "frames": ds.num_frames, "camera": camera}
    assert ds.num_episodes == n, (ds.num_episodes, n)
    assert ds.num_frames == sum(len(expected[f"actions_{i}"]) for i in range(n))
    worst_psnr = float("inf")
    for ep in range(n):
        start = ds.meta.episodes[ep]["dataset_from_index"]
        actions = expected[f"actions_{ep}"]
        frames = expected[f"frames_{ep}"]
        for t in range(len(actions)):
            item = ds[start + t]
            assert int(item["episode_index"]) == ep and int(item["frame_index"]) == t
            assert np.array_equal(item["action"].numpy(), actions[t]), f"episode {ep} frame {t}: action differs"
            image = (item[camera].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
            worst_psnr = min(worst_psnr, psnr(image, frames[t]))
    out["min_psnr_db"] = worst_psnr
    assert worst_psnr >= 40, worst_psnr

    # Stats: LeRobot's own computation on the same actions agrees with stats.json.
    stats = ds.meta.stats
    all_actions = np.concatenate([expected[f"actions_{i}"] for i in range(n)])
    theirs = compute_episode_stats({"action": all_actions}, {"action": {"dtype": "float32", "shape": (2,)}})["action"]
    for key in ("min", "max", "mean", "std"):
        np.testing.assert_allclose(stats["action"][key], theirs[key], rtol=1e-4, atol=1e-6)
    for key in ("q01", "q10", "q50", "q90", "q99"):  # per-episode histograms, aggregated: close, not equal
        assert stats["action"][key].shape == theirs[key].shape
    out["stats_keys"] = sorted(stats)

    # A DataLoader with delta_timestamps (past frames and an action chunk), as policies train.
    fps = ds.fps
    windowed = LeRobotDataset(
        "dream/check", root=root, video_backend="torchcodec",
        delta_timestamps={camera: [-1 / fps, 0.0], "action": [t / fps for t in range(4)]},
    )
    loader = torch.utils.data.DataLoader(windowed, batch_size=4, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    assert tuple(batch[camera].shape[:2]) == (4, 2) and tuple(batch["action"].shape[:2]) == (4, 4)
    assert "action_is_pad" in batch
    first = windowed[0]
    assert bool(first[f"{camera}_is_pad"][0]) and not bool(first[f"{camera}_is_pad"][1])
    np.testing.assert_array_equal(first["action"].numpy(), expected["actions_0"][:4])
    out["dataloader_batch"] = {k: list(v.shape) for k, v in batch.items() if hasattr(v, "shape")}

    # StreamingLeRobotDataset from the local root: every frame once, actions as written.
    # lerobot 0.4.4's streaming reader seeks frame `index / fps` of the episode's video file,
    # i.e. it assumes the camera's whole timeline is one file: check it on such datasets.
    files = {(e[f"videos/{camera}/chunk_index"], e[f"videos/{camera}/file_index"]) for e in ds.meta.episodes}
    if len(files) > 1:
        out["streamed"] = None
        print(json.dumps(out))
        return 0
    streaming = StreamingLeRobotDataset("dream/check", root=root, shuffle=False)
    seen = []
    for item in streaming:
        seen.append((int(item["episode_index"]), int(item["frame_index"])))
        ep, t = seen[-1]
        assert np.array_equal(item["action"].numpy(), expected[f"actions_{ep}"][t])
    assert sorted(seen) == sorted((ep, t) for ep in range(n) for t in range(len(expected[f"actions_{ep}"])))
    out["streamed"] = len(seen)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
