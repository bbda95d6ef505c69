"""dream.actions.gr1_actions against an independent re-derivation of DreamDojo's GR-1 loader."""

from __future__ import annotations

import json
import warnings
from importlib import resources

import numpy as np
import pytest

from dream.actions import Gr1Stats, gr1_actions, looks_like_absolute_gr1, warn_if_absolute_gr1
from dream.errors import InputValidationError
from dream.resources.models import ModelHandle
from dream.types import ModelSpec, ModelSpecData

STATS = json.loads(resources.files("dream").joinpath("_data", "gr1_unified_minmax.json").read_text())


def _gather(raw: np.ndarray) -> np.ndarray:
    """44 → 29 dims, read from the stats file's own layout and order (not the module's constants)."""
    cols = [i for part in STATS["model_order_29"] for i in range(*STATS["layout_44"][part])]
    return raw[..., cols]


def _norm(x: np.ndarray, lo: list[float], hi: list[float]) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    for j in range(x.shape[-1]):
        if hi[j] != lo[j]:
            out[..., j] = 2.0 * (x[..., j] - lo[j]) / (hi[j] - lo[j]) - 1.0
    return out


def nvidia_loader(window: np.ndarray, state: np.ndarray) -> np.ndarray:
    """One sample as DreamDojo's loader builds it (facts file, groot_dreams/data/dataset.py).

    window: the prefix step then the sample's steps (n + 2 rows for n model actions: the
    loader reads one step more than it uses); state: raw state at the prefix step.
    Groups of 4 over the steps, each minus the last action before the group; then row 0,
    dims 0:29, overwritten by the normalised state (a write through a view).
    """
    rows = _norm(_gather(window), STATS["action_min"], STATS["action_max"])
    deltas = [rows[t : t + 4] - rows[t - 1] for t in range(1, len(rows) - 1, 4)]
    seq = np.zeros((len(window) - 2, 384))
    seq[:, :29] = np.concatenate(deltas)
    key = seq[0:1, :29]
    key[:, :29] = _norm(_gather(state), STATS["state_min"], STATS["state_max"])[None]
    return seq


def raw_episode(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random raw GR-1 data inside (and a bit beyond) the unified ranges."""
    rng = np.random.default_rng(seed)
    lo = np.full(44, -2.5)
    hi = np.full(44, 2.5)
    return rng.uniform(lo, hi, (steps, 44)), rng.uniform(lo, hi, 44)


@pytest.mark.parametrize("t", [12, 48])
def test_gr1_actions_equals_the_loader_on_random_data(t: int) -> None:
    raw, state = raw_episode(t + 2, seed=t)
    expected = nvidia_loader(raw, state)
    got = gr1_actions(raw[: t + 1], state)
    assert got.dtype == np.float32 and got.shape == (t, 384)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=2e-6)  # float32 out; some ranges are tiny
    assert not got[:, 29:].any()


def test_gr1_actions_chunks_match_per_chunk_loader_deltas() -> None:
    """Per chunk of 12 (13 steps + prefix, as NVIDIA's per-chunk loader takes them) the deltas agree."""
    raw, state = raw_episode(50, seed=3)
    got = gr1_actions(raw[:49], state)
    for c in range(4):
        window = raw[12 * c : 12 * c + 14]
        ref = nvidia_loader(window, state)
        # Row 0 of a chunk is the state only for the first chunk; its other rows are deltas.
        first = 0 if c == 0 else 1
        np.testing.assert_allclose(got[12 * c + first : 12 * c + 12], ref[first:], rtol=1e-6, atol=2e-6)
    grouped = _norm(_gather(raw[:49]), STATS["action_min"], STATS["action_max"])
    np.testing.assert_allclose(got[12, :29], grouped[13] - grouped[12], rtol=1e-6, atol=2e-6)


def test_gr1_actions_row_semantics_by_hand() -> None:
    """Identity stats on a single moving joint: easy numbers to check by eye."""
    stats = Gr1Stats(
        action_min=(-1.0,) * 29, action_max=(1.0,) * 29, state_min=(0.0,) * 29, state_max=(2.0,) * 29
    )
    raw = np.zeros((9, 44))
    raw[:, 22] = np.arange(9) * 0.1  # right_arm[0] → model dim 7
    raw[:, 41] = 0.5  # waist[0] → model dim 26, constant: deltas 0
    state = np.zeros(44)
    state[0] = 1.5  # left_arm[0] → model dim 0, normalised with the state stats: 0.5
    out = gr1_actions(raw, state, stats=stats)
    # Row 0 holds the state (dim 7 of the state is 0 → −1); rows 1-3 step − step 0, rows 4-7 step − step 4.
    np.testing.assert_allclose(out[:, 7], [-1.0, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
    assert out[0, 0] == pytest.approx(0.5)
    assert out[0, 7] == pytest.approx(-1.0)
    assert not out[1:, 26].any()


def test_gr1_actions_constant_dims_are_zero() -> None:
    lo = tuple(float(v) for v in range(29))
    stats = Gr1Stats(action_min=lo, action_max=lo, state_min=lo, state_max=lo)
    raw, state = raw_episode(5)
    assert not gr1_actions(raw, state, stats=stats).any()


def test_gr1_actions_stats_file(tmp_path) -> None:
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(STATS))
    raw, state = raw_episode(13)
    np.testing.assert_array_equal(gr1_actions(raw, state, stats=path), gr1_actions(raw, state))
    path.write_text(json.dumps({"action_min": [0.0] * 3}))
    with pytest.raises(InputValidationError, match=r"stats\.json"):
        gr1_actions(raw, state, stats=path)


@pytest.mark.parametrize(
    ("rows", "state_shape", "match"),
    [
        (12, (44,), r"T = 11 .* multiple of 4"),
        (1, (44,), r"T = 0 .* multiple of 4"),
        (13, (29,), r"state must be \(44,\), got shape \(29,\)"),
    ],
)
def test_gr1_actions_rejects_bad_shapes(rows: int, state_shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(InputValidationError, match=match):
        gr1_actions(np.zeros((rows, 44)), np.zeros(state_shape))


def test_gr1_actions_rejects_wrong_width_and_nan() -> None:
    with pytest.raises(InputValidationError, match=r"\(T \+ 1, 44\) raw GR-1 vectors, got shape \(13, 29\)"):
        gr1_actions(np.zeros((13, 29)), np.zeros(44))
    raw = np.zeros((13, 44))
    raw[5, 7] = np.nan
    with pytest.raises(InputValidationError, match=r"actions\[5, 7\] is nan"):
        gr1_actions(raw, np.zeros(44))
    state = np.zeros(44)
    state[3] = np.inf
    with pytest.raises(InputValidationError, match=r"state\[3\] is inf"):
        gr1_actions(np.zeros((13, 44)), state)
    with pytest.raises(InputValidationError, match="numeric array"):
        gr1_actions([["a"] * 44] * 13, np.zeros(44))


# ------------------------------------------------------------------- absolute-looking warning


def smooth_episode(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A slow random walk from the middle of each joint's range: what a teleop episode looks like."""
    rng = np.random.default_rng(seed)
    cols = [i for part in STATS["model_order_29"] for i in range(*STATS["layout_44"][part])]
    raw = np.zeros((steps, 44))
    lo, hi = np.asarray(STATS["action_min"]), np.asarray(STATS["action_max"])
    raw[:, cols] = (lo + hi) / 2 + np.cumsum(rng.normal(0, 0.005, (steps, 29)), axis=0) * (hi - lo)
    return raw, raw[0].copy()


def _gr1_handle() -> ModelHandle:
    spec = ModelSpec(
        slug="gr1-test", active=True, arch=ModelSpecData(action_dim=384, chunk_size=12, embodiment="GR-1")
    )
    return ModelHandle(spec=spec, client=None)


def test_absolute_gr1_actions_warn_on_predict_and_model_form_does_not() -> None:
    raw, state = smooth_episode(13, seed=5)
    absolute = np.zeros((12, 384), np.float32)
    absolute[:, :29] = _gather(raw[1:])
    model_form = gr1_actions(raw, state)
    assert looks_like_absolute_gr1(absolute) and not looks_like_absolute_gr1(model_form)
    handle = _gr1_handle()
    frame = np.zeros((32, 32, 3), np.uint8)
    common = dict(seed=0, num_steps=None, guidance=None, score=False, mode="sync", idempotency_key=None,
                  webhook_url=None, timeout_s=None, frame_bytes=None, actions_bytes=None, frame_path=None,
                  actions_path=None)
    with pytest.warns(UserWarning, match=r"look absolute.*dream\.actions\.gr1_actions") as record:
        handle._rollout_request(frame, absolute, **common)
    assert record[0].filename == __file__  # points at the caller, not at dream's internals
    with pytest.warns(UserWarning, match="look absolute"):
        handle._batch_request(frame, absolute[None].repeat(2, 0), seed=0, num_steps=None, guidance=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handle._rollout_request(frame, model_form, **common)


def test_absolute_warning_only_for_gr1() -> None:
    big = np.full((12, 384), 2.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_absolute_gr1("PushT", big) is False
    with pytest.warns(UserWarning):
        assert warn_if_absolute_gr1("gr1", big) is True
