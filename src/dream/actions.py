"""Raw robot data → the action arrays a model takes (``predict(actions=...)``).

``predict`` passes action arrays to the network unchanged: for ``dreamdojo-2b-gr1`` that is
DreamDojo's *model input*, a (T, 384) float32 array already normalised and made relative.
:func:`gr1_actions` builds that array from raw GR-1 robot data (44-dim joint vectors at
10 fps, as in the LeRobot GR-1 datasets), the way DreamDojo's training and evaluation
loader does:

1. gather the 29 used dims from the 44-dim vector in model order: left arm (7), right
   arm (7), left hand (6), right hand (6), waist (3);
2. min-max normalise to [-1, 1] with the GR-1 unified statistics (separate for actions
   and state; a dim whose min equals its max becomes 0);
3. make the actions relative per group of 4: output rows 4g … 4g+3 are
   ``norm(a[4g+1 … 4g+4]) − norm(a[4g])``, each group minus the last action before it;
4. overwrite row 0, dims 0:29, with the normalised proprio state of the step before the
   start frame; dims 29:384 (the other embodiments' slots) stay zero.

The statistics ship with the package (``dream/_data/gr1_unified_minmax.json``, from
DreamDojo's GR-1 unified stats, already in model order).
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream.errors import InputValidationError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "GR1_ACTION_GROUP",
    "GR1_MODEL_DIMS",
    "GR1_RAW_DIM",
    "Gr1Stats",
    "gr1_actions",
    "gr1_model_order",
    "looks_like_absolute_gr1",
    "warn_if_absolute_gr1",
]

GR1_RAW_DIM = 44  # LeRobot GR-1 `observation.state` / `action` width
GR1_MODEL_DIMS = 29  # the GR-1 slice [0:29) of DreamDojo's 384-dim action
GR1_ACTION_GROUP = 4  # actions per latent frame: deltas are taken per group of 4
MODEL_ACTION_DIM = 384
STATS_FILE = "gr1_unified_minmax.json"

# (start, stop) in the 44-dim raw vector, in the order the model expects them.
_GR1_LAYOUT_44 = {
    "left_arm": (0, 7),
    "left_hand": (7, 13),
    "left_leg": (13, 19),
    "neck": (19, 22),
    "right_arm": (22, 29),
    "right_hand": (29, 35),
    "right_leg": (35, 41),
    "waist": (41, 44),
}
_GR1_MODEL_ORDER = ("left_arm", "right_arm", "left_hand", "right_hand", "waist")


def _np() -> Any:
    import numpy

    return numpy


@dataclass(frozen=True)
class Gr1Stats:
    """Per-dim min/max of the 29 model-order GR-1 dims, for actions and for the state."""

    action_min: tuple[float, ...]
    action_max: tuple[float, ...]
    state_min: tuple[float, ...]
    state_max: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("action_min", "action_max", "state_min", "state_max"):
            n = len(getattr(self, name))
            if n != GR1_MODEL_DIMS:
                raise InputValidationError(f"GR-1 stats {name} has {n} values; expected {GR1_MODEL_DIMS}")

    @classmethod
    def from_dict(cls, payload: dict[str, Any], *, where: str = "GR-1 stats") -> Gr1Stats:
        """From ``{"action_min": [29], "action_max": [29], "state_min": [29], "state_max": [29]}``."""
        try:
            return cls(*(tuple(float(v) for v in payload[k]) for k in ("action_min", "action_max", "state_min", "state_max")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputValidationError(
                f"{where}: expected action_min/action_max/state_min/state_max lists of {GR1_MODEL_DIMS} numbers ({exc!r})"
            ) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> Gr1Stats:
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputValidationError(f"cannot read GR-1 stats {str(path)!r}: {exc}") from exc
        return cls.from_dict(payload, where=str(path))

    @classmethod
    def default(cls) -> Gr1Stats:
        """DreamDojo's GR-1 unified min/max, shipped inside the package."""
        return _default_stats()


@lru_cache(maxsize=1)
def _default_stats() -> Gr1Stats:
    text = resources.files("dream").joinpath("_data", STATS_FILE).read_text()
    return Gr1Stats.from_dict(json.loads(text), where=f"dream/_data/{STATS_FILE}")


def gr1_model_order(raw: np.ndarray) -> np.ndarray:
    """(..., 44) raw GR-1 vectors → (..., 29) in model order (arms, hands, waist)."""
    np = _np()
    return np.concatenate([raw[..., slice(*_GR1_LAYOUT_44[name])] for name in _GR1_MODEL_ORDER], axis=-1)


def _minmax(x: np.ndarray, lo: tuple[float, ...], hi: tuple[float, ...]) -> np.ndarray:
    np = _np()
    lo_a, hi_a = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    span = hi_a - lo_a
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, 2.0 * (x - lo_a) / safe - 1.0, 0.0)


def _as_float(value: Any, name: str, shape_hint: str) -> np.ndarray:
    np = _np()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"gr1_actions: {name} must be a numeric array {shape_hint} ({exc})") from exc
    return arr


def gr1_actions(actions: Any, state: Any, *, stats: Gr1Stats | str | Path | None = None) -> np.ndarray:
    """Raw GR-1 actions + proprio state → DreamDojo's (T, 384) float32 model input.

    actions: (T + 1, 44) raw GR-1 action vectors at 10 fps (LeRobot's ``action``; take
        every second step of a 20 fps dataset). Row 0 is the step *before* the start
        frame, row 1 the start frame's step.
    state:   (44,) raw proprio state (``observation.state``) at row 0's step.
    stats:   min/max to normalise with: a :class:`Gr1Stats`, a JSON file in its format,
        or None for the GR-1 unified stats shipped with the package.

    Returns (T, 384) float32; row i belongs to action step i + 1 (see the module docstring
    for the recipe). Equal to DreamDojo's own loader for the same data.

    Raises InputValidationError: wrong shapes, T not a positive multiple of 4, NaN or
    infinite values (naming the first offending row and dim), bad stats.
    """
    np = _np()
    a = _as_float(actions, "actions", f"(T + 1, {GR1_RAW_DIM})")
    s = _as_float(state, "state", f"({GR1_RAW_DIM},)")
    if a.ndim != 2 or a.shape[1] != GR1_RAW_DIM:
        raise InputValidationError(
            f"gr1_actions: actions must be (T + 1, {GR1_RAW_DIM}) raw GR-1 vectors, got shape {a.shape}"
        )
    if s.shape != (GR1_RAW_DIM,):
        raise InputValidationError(f"gr1_actions: state must be ({GR1_RAW_DIM},), got shape {s.shape}")
    t = a.shape[0] - 1
    if t < GR1_ACTION_GROUP or t % GR1_ACTION_GROUP:
        raise InputValidationError(
            f"gr1_actions: got {a.shape[0]} action rows, i.e. T = {t} model actions; T must be a positive "
            f"multiple of {GR1_ACTION_GROUP} (pass T + 1 rows: the step before the start frame, then T steps)"
        )
    for name, arr in (("actions", a), ("state", s)):
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            where = ", ".join(str(int(i)) for i in bad[0])
            raise InputValidationError(
                f"gr1_actions: {name}[{where}] is {arr[tuple(bad[0])]} ({len(bad)} non-finite value(s) in {name})"
            )
    if stats is None:
        st = Gr1Stats.default()
    elif isinstance(stats, Gr1Stats):
        st = stats
    else:
        st = Gr1Stats.from_file(stats)

    normed = _minmax(gr1_model_order(a), st.action_min, st.action_max)  # [T+1, 29]
    # Each group of 4 steps minus the step just before the group: rows 4g+1…4g+4 − row 4g.
    before = np.repeat(normed[0:t:GR1_ACTION_GROUP], GR1_ACTION_GROUP, axis=0)  # [T, 29]
    out = np.zeros((t, MODEL_ACTION_DIM), np.float32)
    out[:, :GR1_MODEL_DIMS] = normed[1:] - before
    out[0, :GR1_MODEL_DIMS] = _minmax(gr1_model_order(s), st.state_min, st.state_max)
    return out


# ------------------------------------------------------------------------ sanity check


def looks_like_absolute_gr1(actions: np.ndarray) -> bool:
    """True when (…, T, A) actions look like raw absolute GR-1 values, not model input.

    Model input has a normalised state in row 0 and small deltas (|x| ≲ 0.3) after it;
    raw joint positions are mostly large. The test: most rows after row 0 have some
    |x| > 0.5 in dims 0:29.
    """
    np = _np()
    arr = np.asarray(actions)
    if arr.ndim < 2 or arr.shape[-2] < 2 or arr.shape[-1] < GR1_MODEL_DIMS:
        return False
    rest = np.abs(arr[..., 1:, :GR1_MODEL_DIMS])
    large = (rest > 0.5).any(axis=-1)  # [..., T-1]
    return bool(large.mean() > 0.5)


def _outside_dream_stacklevel() -> int:
    """The stacklevel (for a warnings.warn in our caller) of the first frame outside dream."""
    package = str(Path(__file__).resolve().parent)
    frame = sys._getframe(2)
    level = 2
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn_if_absolute_gr1(embodiment: str, actions: np.ndarray) -> bool:
    """Warn (UserWarning) when GR-1 actions look absolute rather than model input.

    Only for GR-1 models (`embodiment` "GR-1"); returns whether it warned. Not an error:
    arrays are passed to the model unchanged, which is the contract.
    """
    if embodiment.replace("-", "").replace("_", "").upper() != "GR1":
        return False
    if not looks_like_absolute_gr1(actions):
        return False
    warnings.warn(
        "these GR-1 actions look absolute (most rows have |x| > 0.5 in dims 0:29), but the model takes "
        "normalised, relative actions and uses them unchanged; build them from raw GR-1 data with "
        "dream.actions.gr1_actions(actions, state)",
        UserWarning,
        stacklevel=_outside_dream_stacklevel(),
    )
    return True
