"""dream.io: dataset sources and rollout sinks for bulk inference (sdk-surface §18).

    from dream.io import frames_from_dir, RolloutSink
    result = client.predict_many(frames_from_dir("episodes/"), RolloutSink.dir("out/"), spec=...)

Sources (`IterableSource`): `frames_from_dir` (no extra needed), `frames_from_hf`
(datasets), `frames_from_s3` (boto3), `frames_from_lerobot` (LeRobot v2.1 / v3.0
datasets; pyarrow + av). Sinks (`RolloutSink`): `.dir`, `.s3`, `.hf`, `.lerobot` (a LeRobot
v3.0 dataset; pyarrow + av). URIs for the CLI:
`dream.io.uri.source_from_uri` / `sink_from_uri`.

Importing this package loads the contract types and the sink classes; each loader and sink imports its
third-party packages when first used, and a missing one raises ImportError naming
`pip install 'dream-engine[io]'`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dream.io.sinks import DirRolloutSink, HfRolloutSink, LeRobotRolloutSink, S3RolloutSink  # noqa: F401 (an _EXTRAS name)
from dream.io.types import IterableSource, RolloutRecord, RolloutSink, SourceRow

__all__ = [
    "DirRolloutSink",
    "HfRolloutSink",
    "IterableSource",
    "RolloutRecord",
    "RolloutSink",
    "S3RolloutSink",
    "SourceRow",
    "frames_from_dir",
    "frames_from_hf",
    "frames_from_s3",
]

# Beyond the spec's __all__: reachable as attributes, not star-exported.
_EXTRAS = ("frames_from_lerobot", "LeRobotSource", "LeRobotRolloutSink", "source_from_uri", "sink_from_uri")

_LAZY: dict[str, str] = {
    "frames_from_dir": "dream.io.sources.dir",
    "frames_from_hf": "dream.io.sources.hf",
    "frames_from_s3": "dream.io.sources.s3",
    "frames_from_lerobot": "dream.io.sources.lerobot",
    "LeRobotSource": "dream.io.sources.lerobot",
    "source_from_uri": "dream.io.uri",
    "sink_from_uri": "dream.io.uri",
}

if TYPE_CHECKING:
    from dream.io.sources.dir import frames_from_dir
    from dream.io.sources.hf import frames_from_hf
    from dream.io.sources.lerobot import LeRobotSource, frames_from_lerobot  # noqa: F401
    from dream.io.sources.s3 import frames_from_s3
    from dream.io.uri import sink_from_uri, source_from_uri  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dream.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_EXTRAS))
