"""Output bytes do not depend on the thread count nor on the batch (batch-invariant runners).

Written against every registered spec whose runner declares ``batch_invariant`` and whose
weights are here, so a model that replaces the built-in one is held to the same promise.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from dream.engine import specs
from dream.engine.engine import Engine
from dream.engine.runner import runner_class


def _invariant_specs() -> list[str]:
    """One spec per batch-invariant runner family (specs of a family share their code)."""
    out, families = [], set()
    for spec in specs.all_specs():
        if spec.runner in families:
            continue
        try:
            cls = runner_class(spec.runner)
        except ImportError:
            continue
        if cls.batch_invariant and cls.weights_status(spec).available:
            out.append(spec.slug)
            families.add(spec.runner)
    return out


INVARIANT = _invariant_specs()


def _rows(slug: str, n: int, t: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n different start frames and action sequences a model of `slug` accepts."""
    spec = specs.get(slug)
    h, w = spec.resolution
    t = max(spec.chunk_size, t - t % spec.chunk_size)
    if spec.runner == "pusht":
        from dream.examples import pusht_episode

        eps = [pusht_episode(i) for i in range(n)]
        return [e.start_frame for e in eps], [e.actions[:t] for e in eps]
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    return frames, [rng.uniform(-0.05, 0.05, (t, spec.action_dim)).astype(np.float32) for _ in range(n)]


def test_the_default_model_declares_itself_batch_invariant() -> None:
    assert specs.DEFAULT_SPEC in INVARIANT


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    one, two = Engine(INVARIANT, threads=1), Engine(INVARIANT, threads=2)
    yield one, two
    one.close()
    two.close()


@pytest.mark.parametrize("slug", INVARIANT)
def test_mp4_bytes_do_not_depend_on_the_thread_count(engines: tuple[Engine, Engine], slug: str) -> None:
    one, two = engines
    t = specs.get(slug).canonical_T
    frames, actions = _rows(slug, 2, t)
    seed = 3 if specs.get(slug).uses_seed else 0
    for frame, acts in zip(frames, actions, strict=True):
        a = one.encode_mp4(one.predict(frame, acts, spec=slug, seed=seed).frames[0], slug)
        b = two.encode_mp4(two.predict(frame, acts, spec=slug, seed=seed).frames[0], slug)
        assert a == b


@pytest.mark.parametrize("slug", INVARIANT)
def test_fused_rows_are_byte_identical_to_single_predicts(engines: tuple[Engine, Engine], slug: str) -> None:
    _, engine = engines
    t = specs.get(slug).canonical_T
    frames, actions = _rows(slug, 4, t)
    seeds = [0, 1, 2, 3] if specs.get(slug).uses_seed else [0] * 4
    fused = engine.predict_fused(frames, actions, spec=slug, seeds=seeds).frames
    for k in range(4):
        single = engine.predict(frames[k], actions[k], spec=slug, seed=seeds[k]).frames[0]
        assert engine.encode_mp4(fused[k], slug) == engine.encode_mp4(single, slug), f"row {k}"
    pair = engine.predict_fused(frames[2:], actions[2:], spec=slug, seeds=seeds[2:]).frames  # another batch size
    np.testing.assert_array_equal(pair, fused[2:])
