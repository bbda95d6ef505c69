"""Fixtures for the viewer tests: one real bulk output made by predict_many with pusht-96.

Rows: two unperturbed parents (`ep00`, `ep01`), augmented children naming their parent in
`source_episode` (`ep00_aug1` with a small action perturbation, `ep00_aug2` with a large
one), and one failed row (wrong action width).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dream.io.types import IterableSource, SourceRow

# The S3 (moto) and Hub stand-in fixtures of the dream.io tests, for the viewer's store tests.
from tests.io.conftest import _hf_offline_cache, hub, hub_repo, moto_endpoint, s3_bucket, s3_kwargs  # noqa: F401

HORIZON = 8  # short rows keep the suite fast; pusht-96 takes any T


class AugmentedSource(IterableSource):
    """Parents plus perturbed children, as an augmentation pipeline would write them."""

    def __init__(self) -> None:
        import numpy as np

        from dream.examples import pusht_episode
        from dream.inputs import encode_npy, encode_png

        self.rows: list[SourceRow] = []
        for i in (0, 1):
            ep = pusht_episode(i)
            frame = encode_png(ep.start_frame)
            actions = ep.actions[:HORIZON]
            self.rows.append(SourceRow(f"ep{i:02d}", frame, encode_npy(actions), {"episode": i}))
            if i == 0:
                for k, scale in ((1, 4.0), (2, 120.0)):
                    noise = np.random.default_rng(k).normal(0, scale, actions.shape).astype(np.float32)
                    self.rows.append(SourceRow(f"ep00_aug{k}", frame, encode_npy(actions + noise),
                                               {"source_episode": "ep00", "noise": scale}))
        bad = np.zeros((HORIZON, 3), np.float32)
        self.rows.append(SourceRow("ep01_bad", frame, encode_npy(bad), {"source_episode": "ep01"}))
        self.rows_hint = len(self.rows)

    def __iter__(self) -> Iterator[SourceRow]:
        return iter(self.rows)


@pytest.fixture(scope="session")
def bulk_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished dir-sink output: 4 ok rows (2 with a parent) and 1 failed row."""
    import dream
    from dream.io import RolloutSink

    out = tmp_path_factory.mktemp("view") / "bulk"
    result = dream.Client().predict_many(AugmentedSource(), RolloutSink.dir(out), spec="pusht-96",
                                         concurrency=1, progress=False)
    assert (result.ok, result.failed) == (4, 1), result.failures
    return out
