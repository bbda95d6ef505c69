"""Per-episode and dataset statistics in the form LeRobot's normalisers read (`meta/stats.json`).

LeRobot (0.4) stores, per feature, `min`, `max`, `mean`, `std`, `count` and the quantiles
`q01`, `q10`, `q50`, `q90`, `q99`; per episode in the episodes table (`stats/<feature>/<stat>`
columns) and aggregated over the dataset in `meta/stats.json`. The definitions, as LeRobot
computes them:

* vectors (T, D): per dimension over the T frames; `count` = [T]. A scalar feature (T,)
  keeps a trailing axis of 1.
* video frames: per colour channel over every pixel of a sample of frames (all of them up
  to 100, then T^0.75 evenly spaced, at most 10,000), values scaled to [0, 1], shape
  (3, 1, 1); `count` = [frames sampled].
* quantiles: from a 5,000-bin histogram spanning [min, max], linearly interpolated inside
  the bin that crosses q·count.
* aggregation over episodes: min of mins, max of maxes, count-weighted mean, the pooled
  variance (each episode's variance plus its mean's squared distance to the total mean,
  count-weighted), and count-weighted quantiles.

Means and variances are accumulated in float64 (LeRobot accumulates in the data's dtype:
the values agree to float32 precision).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
HISTOGRAM_BINS = 5000


def sample_count(length: int) -> int:
    """How many frames of an episode of `length` enter the image statistics (as LeRobot samples)."""
    if length < 100:
        return length
    return max(100, min(int(length**0.75), 10_000))


def sampled_frame_indices(length: int) -> list[int]:
    """The evenly spaced frame indices the image statistics read."""
    import numpy as np

    return np.round(np.linspace(0, length - 1, sample_count(length))).astype(int).tolist()


def _quantiles(columns: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, np.ndarray]:
    """Histogram quantiles per column of (N, D) values."""
    import numpy as np

    n, dims = columns.shape
    out = {key: np.empty(dims, np.float64) for key in QUANTILE_KEYS}
    for d in range(dims):
        edges = np.linspace(float(low[d]) - 1e-10, float(high[d]) + 1e-10, HISTOGRAM_BINS + 1)
        hist, _ = np.histogram(columns[:, d], bins=edges)
        for key, value in _histogram_quantiles(hist, edges, n).items():
            out[key][d] = value
    return out


def _histogram_quantiles(hist: np.ndarray, edges: np.ndarray, n: int) -> dict[str, float]:
    """The quantiles of `n` values binned as `hist` over `edges`, interpolated inside a bin."""
    import numpy as np

    cumulative = np.cumsum(hist)
    out = {}
    for q, key in zip(QUANTILES, QUANTILE_KEYS, strict=True):
        target = q * n
        i = int(np.searchsorted(cumulative, target))
        if i == 0:
            value = edges[0]
        elif i >= len(cumulative):
            value = edges[-1]
        else:
            below = cumulative[i - 1]
            inside = cumulative[i] - below
            value = edges[i] if inside == 0 else edges[i] + (target - below) / inside * (edges[i + 1] - edges[i])
        out[key] = float(value)
    return out


def _column_stats(columns: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Stats of (N, D) values, one per column; `count` is what LeRobot records as the count."""
    import numpy as np

    values = columns.astype(np.float64, copy=False)
    low, high = values.min(axis=0), values.max(axis=0)
    mean = values.mean(axis=0)
    std = np.sqrt(np.maximum(0.0, (values**2).mean(axis=0) - mean**2))
    stats = {"min": low, "max": high, "mean": mean, "std": std, "count": np.array([count], np.int64)}
    if values.shape[0] < 2:
        stats.update({key: mean.copy() for key in QUANTILE_KEYS})
    else:
        stats.update(_quantiles(values, low, high))
    return stats


def vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of a (T,) or (T, D) numeric feature over one episode."""
    import numpy as np

    array = np.asarray(values)
    if array.ndim == 1:
        return _column_stats(array.reshape(-1, 1), array.shape[0])
    return _column_stats(array.reshape(array.shape[0], -1), array.shape[0])


def _uint8_column_stats(columns: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """`_column_stats` of (N, D) uint8 values from their 256-value histograms (same numbers, O(N))."""
    import numpy as np

    n, dims = columns.shape
    levels = np.arange(256, dtype=np.float64)
    stats: dict[str, np.ndarray] = {k: np.empty(dims) for k in ("min", "max", "mean", "std", *QUANTILE_KEYS)}
    # One pass over the pixels: column d's level v counted at d * 256 + v.
    keys = columns.astype(np.uint16) + (np.arange(dims, dtype=np.uint16) * 256)
    all_counts = np.bincount(keys.ravel(), minlength=256 * dims).astype(np.float64)
    for d in range(dims):
        counts = all_counts[d * 256: (d + 1) * 256]
        present = np.nonzero(counts)[0]
        low, high = float(present[0]), float(present[-1])
        mean = float(counts @ levels) / n
        stats["min"][d], stats["max"][d], stats["mean"][d] = low, high, mean
        stats["std"][d] = math.sqrt(max(0.0, float(counts @ levels**2) / n - mean**2))
        if n < 2:
            for key in QUANTILE_KEYS:
                stats[key][d] = mean
            continue
        # The 5,000-bin histogram over [min, max], filled from the level counts.
        edges = np.linspace(low - 1e-10, high + 1e-10, HISTOGRAM_BINS + 1)
        bins = np.clip(np.searchsorted(edges, levels[present], side="right") - 1, 0, HISTOGRAM_BINS - 1)
        hist = np.bincount(bins, weights=counts[present], minlength=HISTOGRAM_BINS)
        for key, value in _histogram_quantiles(hist, edges, n).items():
            stats[key][d] = value
    stats["count"] = np.array([count], np.int64)
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of sampled uint8 (N, H, W, 3) frames: per channel, scaled to [0, 1], shape (3, 1, 1)."""
    channels = frames.shape[-1]
    stats = _uint8_column_stats(frames.reshape(-1, channels), frames.shape[0])
    return {k: v if k == "count" else (v / 255.0).reshape(channels, 1, 1) for k, v in stats.items()}


def aggregate(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Dataset statistics from per-episode statistics (module docstring)."""
    import numpy as np

    features = sorted({key for stats in per_episode for key in stats})
    out: dict[str, dict[str, np.ndarray]] = {}
    for feature in features:
        parts = [stats[feature] for stats in per_episode if feature in stats]
        counts = np.stack([np.asarray(p["count"], np.float64) for p in parts])
        means = np.stack([np.asarray(p["mean"], np.float64) for p in parts])
        total = counts.sum(axis=0)
        weights = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))
        mean = (means * weights).sum(axis=0) / total
        variances = np.stack([np.asarray(p["std"], np.float64) ** 2 for p in parts])
        variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
        agg: dict[str, np.ndarray] = {
            "min": np.min(np.stack([np.asarray(p["min"]) for p in parts]), axis=0),
            "max": np.max(np.stack([np.asarray(p["max"]) for p in parts]), axis=0),
            "mean": mean,
            "std": np.sqrt(variance),
            "count": total.astype(np.int64),
        }
        for key in QUANTILE_KEYS:
            if all(key in p for p in parts):
                agg[key] = (np.stack([np.asarray(p[key], np.float64) for p in parts]) * weights).sum(axis=0) / total
        out[feature] = agg
    return out


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Stats as nested lists (what `stats.json` and the episodes table hold)."""
    return {feature: {key: value.tolist() for key, value in values.items()} for feature, values in stats.items()}


def from_json(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    import numpy as np

    return {feature: {key: np.asarray(value) for key, value in values.items()} for feature, values in stats.items()}
