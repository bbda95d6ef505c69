"""`estimate_cost`: what a run of a source would cost, without running it (sdk-surface §17)."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

from dream.bulk.run import close_iterator
from dream.io.types import IterableSource

__all__ = ["DEFAULT_FRAMES_PER_ROW", "CostEstimate", "estimate_cost_for", "estimate_cost_for_async", "npy_shape"]

log = logging.getLogger("dream.bulk")

DEFAULT_FRAMES_PER_ROW = 49  # sdk-surface §17: used when the first row's actions can't be read
NPY_MAX_HEADER = 10_000  # header text numpy.load reads without allow_pickle (its own cap)
NPY_PEEK_BYTES = 12 + NPY_MAX_HEADER  # magic, version and length field, then the header


@dataclass(frozen=True)
class CostEstimate:
    """Price of running a source (sdk-surface §17), plus the estimated engine time.

    est_engine_s: rows × the spec's measured wall per rollout (engine-seconds; divide by
    the number of engines serving the run for wall-clock), None when either is unknown.
    """

    rows: int | None
    frames_per_row: int
    total_frames: int | None
    total_usd: float | None
    spec: str
    price_per_frame_usd: float
    est_engine_s: float | None = None


def npy_shape(data: bytes) -> tuple[int, ...] | None:
    """The array shape in a `.npy` header, without loading the data (None if `data` does
    not start with a header `numpy.load` would accept).

    Read by numpy's own header readers (`numpy.lib.format`), capped at
    `NPY_MAX_HEADER` bytes of header text as `numpy.load` is, so the estimate sees the
    same shape the engine will load; a shape with a negative dimension is no array.
    """
    from numpy.lib import format as npy_format

    stream = io.BytesIO(bytes(data[:NPY_PEEK_BYTES]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's note on headers written by Python 2
            version = npy_format.read_magic(stream)
            if version == (1, 0):
                shape, _, _ = npy_format.read_array_header_1_0(stream, max_header_size=NPY_MAX_HEADER)
            elif version in ((2, 0), (3, 0)):  # 3.0 differs only in the text's encoding (utf-8)
                shape, _, _ = npy_format.read_array_header_2_0(stream, max_header_size=NPY_MAX_HEADER)
            else:
                return None
    except (ValueError, EOFError, OSError):
        return None
    if any(n < 0 for n in shape):
        return None
    return tuple(int(n) for n in shape)


def _peek_frames_per_row(src: IterableSource, *, max_rows: int = 8) -> int:
    """T + 1 of the first readable row's actions (sdk-surface §17), else 49."""
    try:
        rows = iter(src)
    except Exception:
        return DEFAULT_FRAMES_PER_ROW
    try:
        for _ in range(max_rows):
            row = next(rows, None)
            if row is None:
                break
            shape = npy_shape(row.actions_bytes) if row.actions_bytes else None
            if shape is not None and len(shape) == 2:
                return shape[0] + 1
    except Exception:
        log.debug("peeking at the first row failed", exc_info=True)
    finally:
        close_iterator(rows)
    return DEFAULT_FRAMES_PER_ROW


def estimate_cost_for(
    src: IterableSource,
    *,
    spec: str | None,
    frames_per_row: int | None,
    price_per_frame_usd: float,
    rollout_wall_s: float | None,
    rollout_frames: int | None = None,
) -> CostEstimate:
    """Estimate a run of `src` without running it.

    rows: `src.rows_hint`, else `len(src)`, else None (never a full pass over the data;
    the built-in sources fill rows_hint from their listing or metadata).
    frames_per_row: the argument, else T + 1 of the first row's actions (read from the
    .npy header only), else 49.
    est_engine_s: rows × `rollout_wall_s` (the spec's measured wall per rollout), scaled by
    frames_per_row / `rollout_frames` when the measurement was for another length.
    """
    rows = getattr(src, "rows_hint", None)
    if rows is None:
        try:
            rows = len(src)
        except TypeError:
            rows = None
    fpr = int(frames_per_row) if frames_per_row is not None else _peek_frames_per_row(src)
    price = float(price_per_frame_usd)
    total_frames = rows * fpr if rows is not None else None
    total_usd = total_frames * price if total_frames is not None else None
    est_engine_s = None
    if rows is not None and rollout_wall_s is not None:
        per_row = float(rollout_wall_s)
        if rollout_frames:
            per_row *= fpr / float(rollout_frames)
        est_engine_s = rows * per_row
    return CostEstimate(
        rows=rows,
        frames_per_row=fpr,
        total_frames=total_frames,
        total_usd=total_usd,
        spec=spec or "",
        price_per_frame_usd=price,
        est_engine_s=est_engine_s,
    )


async def estimate_cost_for_async(
    src: IterableSource,
    *,
    spec: str | None,
    frames_per_row: int | None,
    price_per_frame_usd: float,
    rollout_wall_s: float | None,
    rollout_frames: int | None = None,
) -> CostEstimate:
    """`estimate_cost_for` in a worker thread (the peek may do blocking I/O)."""
    import asyncio

    return await asyncio.to_thread(
        estimate_cost_for,
        src,
        spec=spec,
        frames_per_row=frames_per_row,
        price_per_frame_usd=price_per_frame_usd,
        rollout_wall_s=rollout_wall_s,
        rollout_frames=rollout_frames,
    )
