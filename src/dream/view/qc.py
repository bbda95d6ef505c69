"""Augmentation QC: score each augmented row against its unperturbed parent rollout.

The product docs' augmentation guide asks for "PSNR drift against the unperturbed
parent". `run_qc` finds each row's parent through a source-metadata key (`parent_key`,
e.g. `source_episode`): a row of the same output with that id, a parent rolled out by an
earlier QC run (`qc_parents/`), or else one it rolls out now from `parents` (the
unperturbed source rows) into `qc_parents/` beside the output.

Per predicted frame t ≥ 1 (frame 0 is the shared start frame) it measures, with the one
PSNR of `dream.eval.metrics`:

    psnr_t   = PSNR(row_t, parent_t)                       how far the row is from its parent
    drift_t  = 10·log10(1 + MSE(row_t, parent_t) / max(MSE(parent_t, parent_0), 1))

`drift_t` is the PSNR drop, in dB, that the row's departure from its parent adds on top
of the parent's own change since its start frame: 0 dB when the row reproduces its
parent, 3 dB when it departs from the parent as much as the parent moves. A raw PSNR
against the parent has no fixed scale (a still scene gives 45 dB for a one-pixel
change, a busy one 25 dB for a faithful variant); normalising by the parent's motion
makes one threshold (`threshold_db`, default 2.0, the guide's "past 2–3 dB") mean the
same on any scene. The floor of 1 (MSE in uint8 units², PSNR 48 dB) keeps a parent that
does not move from turning any pixel of noise into infinite drift.

A row is flagged when its mean drift passes `threshold_db`. The scores go into
`qc_scores.parquet` beside the output's metadata; `dream view` joins them
(`qc_drift_db`, `qc_flagged`) and puts a flagged row side by side with its parent.
"""

from __future__ import annotations

import io
import math
import statistics
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream._extras import require
from dream.io.types import IterableSource, SourceRow
from dream.view.catalog import PARENTS_DIR, QC_SCORES_FILE, Catalog, Row
from dream.view.media import FrameCache
from dream.view.store import OutputStore, open_store

if TYPE_CHECKING:
    import numpy as np

__all__ = ["QCResult", "QCScore", "drift_per_frame", "run_qc"]

MOTION_FLOOR = 1.0  # MSE floor of the parent's own change (uint8 units²), see the module docstring


def drift_per_frame(frames: np.ndarray, parent: np.ndarray) -> tuple[list[float | None], list[float]]:
    """(PSNR vs parent, drift in dB) for predicted frames 1…n-1 of two (T, H, W, 3) uint8 videos.

    Frames beyond the shorter video are left out; PSNR is None where the frames are
    identical. ValueError names both shapes when the frame sizes differ or a video has
    no predicted frame.
    """
    import numpy as np

    from dream.eval.metrics import mse, psnr

    if frames.shape[1:] != parent.shape[1:]:
        raise ValueError(f"row and parent differ in frame size: {frames.shape[1:]} vs {parent.shape[1:]}")
    n = min(len(frames), len(parent))
    if n < 2:
        raise ValueError(f"need at least 2 frames in both videos, got {len(frames)} and {len(parent)}")
    row, par = frames[1:n], parent[1:n]
    values = psnr(row, par)
    deviation = mse(row, par)
    motion = np.maximum(mse(par, np.broadcast_to(parent[0], par.shape)), MOTION_FLOOR)
    drift = 10.0 * np.log10(1.0 + deviation / motion)
    return ([None if not math.isfinite(v) else round(float(v), 3) for v in values],
            [round(float(d), 4) for d in drift])


@dataclass(frozen=True)
class QCScore:
    """One row's score against its parent (one row of `qc_scores.parquet`)."""

    row_id: str
    parent_row_id: str
    drift_db: float | None  # mean drift over the predicted frames
    max_drift_db: float | None
    mean_psnr_db: float | None  # mean PSNR vs the parent (identical frames left out)
    psnr_db: list[float | None]  # per predicted frame
    drift_per_frame_db: list[float]
    flagged: bool
    error: str | None = None  # why the row could not be scored


@dataclass
class QCResult:
    """What `run_qc` did: scores, flags, parents rolled out, where the table went."""

    scores: list[QCScore]
    threshold_db: float
    scores_uri: str
    rolled_out_parents: list[str] = field(default_factory=list)

    @property
    def scored(self) -> list[QCScore]:
        return [s for s in self.scores if s.error is None]

    @property
    def flagged(self) -> list[QCScore]:
        return [s for s in self.scores if s.flagged]

    @property
    def unscored(self) -> list[QCScore]:
        return [s for s in self.scores if s.error is not None]

    def worst(self, n: int = 10) -> list[QCScore]:
        return sorted(self.scored, key=lambda s: -(s.drift_db or 0.0))[:n]


class _Only(IterableSource):
    """The rows of `source` whose id is in `wanted`."""

    def __init__(self, source: IterableSource, wanted: set[str]) -> None:
        self.source = source
        self.wanted = wanted
        self.rows_hint = len(wanted)

    def __iter__(self) -> Iterator[SourceRow]:
        for row in self.source:
            if row.row_id in self.wanted:
                yield row


def _sampling_seed(row: Row) -> int | None:
    """The seed a row was rolled out with: `sampling_seed`, or `seed` in the layout before 0.5.0's
    (today a `seed` column is the source's own metadata, e.g. an augmentation's noise seed)."""
    value = row.value("sampling_seed")
    if value is None and row.value("source_metadata") is not None:
        value = row.value("seed")
    return None if value is None else int(value)


def _roll_out_parents(store: OutputStore, parents: IterableSource, wanted: set[str], children: list[Row], *,
                      client: Any, spec: str | None, progress: bool) -> list[str]:
    """Roll out the wanted parents into `qc_parents/` of the output; returns the ids done."""
    from dream.io import RolloutSink

    specs = Counter(str(r.value("spec")) for r in children if r.value("spec"))
    seeds = Counter(seed for seed in map(_sampling_seed, children) if seed is not None)
    spec = spec or (specs.most_common(1)[0][0] if specs else None)
    seed = seeds.most_common(1)[0][0] if seeds else 0
    local = store.local_dir()
    with tempfile.TemporaryDirectory(prefix="dream-qc-") as tmp:
        target = local / PARENTS_DIR if local is not None else Path(tmp) / PARENTS_DIR
        client.predict_many(_Only(parents, wanted), RolloutSink.dir(target), spec=spec, seed=seed,
                            progress=progress, concurrency=2)
        done = sorted(wanted & {p.name[:-4] for p in (target / "videos").glob("*.mp4")})
        if local is None:
            for row_id in done:
                store.write_bytes(f"{PARENTS_DIR}/videos/{row_id}.mp4", (target / "videos" / f"{row_id}.mp4").read_bytes())
    return done


def _write_scores(store: OutputStore, scores: list[QCScore]) -> str:
    pa = require("pyarrow", "Writing the QC scores table")
    pq = require("pyarrow.parquet", "Writing the QC scores table")
    schema = pa.schema([
        ("row_id", pa.string()), ("parent_row_id", pa.string()), ("drift_db", pa.float64()),
        ("max_drift_db", pa.float64()), ("mean_psnr_db", pa.float64()), ("psnr_db", pa.list_(pa.float64())),
        ("drift_per_frame_db", pa.list_(pa.float64())), ("flagged", pa.bool_()), ("error", pa.string()),
    ])
    table = pa.Table.from_pylist([s.__dict__ for s in scores], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    store.write_bytes(QC_SCORES_FILE, buf.getvalue())
    return f"{store.uri.rstrip('/')}/{QC_SCORES_FILE}"


def run_qc(
    output: str | Path | OutputStore,
    *,
    parent_key: str,
    threshold_db: float = 2.0,
    parents: IterableSource | None = None,
    client: Any = None,
    spec: str | None = None,
    progress: bool = True,
) -> QCResult:
    """Score every row of a sink output whose source metadata names a parent (module docstring).

    `parents`: the unperturbed rows (their row ids are the parent ids), rolled out with
    `client` (default: the embedded engine) for parents the output does not already
    hold; `spec` defaults to the children's. Rows whose parent cannot be found, or that
    failed, are listed with an `error` and never flagged. Raises ValueError for a
    `parent_key` no row has, or a negative threshold.
    """
    if not (threshold_db >= 0 and math.isfinite(threshold_db)):
        raise ValueError(f"threshold_db must be a finite number >= 0, got {threshold_db!r}")
    store = output if isinstance(output, OutputStore) else open_store(output)
    catalog = Catalog(store, parent_key=parent_key)
    children = [r for r in catalog.rows if r.source_value(parent_key) not in (None, "")]
    if not children:
        keys = sorted({k for r in catalog.rows for k in r.source})
        raise ValueError(f"no row of {store.uri!r} has source metadata {parent_key!r}; the rows have {keys}")
    wanted = {str(r.source[parent_key]) for r in children if r.video is not None}
    missing = {p for p in wanted if not _parent_available(catalog, p)}
    rolled: list[str] = []
    if missing and parents is not None:
        if client is None:
            import dream

            client = dream.Client()
        rolled = _roll_out_parents(store, parents, missing, children, client=client, spec=spec, progress=progress)
        catalog = Catalog(store, parent_key=parent_key)  # sees qc_parents/ now
    cache = FrameCache(store.read_bytes, store.version, max_videos=64)
    tqdm = require("tqdm", "dream qc").tqdm
    scores: list[QCScore] = []
    for row in tqdm(children, desc="qc", unit="row", disable=not progress):
        parent = str(row.source[parent_key])
        scores.append(_score(row, parent, catalog, cache, threshold_db))
    return QCResult(scores, threshold_db, _write_scores(store, scores), rolled)


def _parent_available(catalog: Catalog, parent: str) -> bool:
    try:
        catalog.parent_video(parent)
    except KeyError:
        return False
    return True


def _score(row: Row, parent: str, catalog: Catalog, cache: FrameCache, threshold_db: float) -> QCScore:
    def unscored(error: str) -> QCScore:
        return QCScore(row.row_id, parent, None, None, None, [], [], False, error)

    if row.video is None:
        return unscored(f"the row failed: {row.error}")
    if parent == row.row_id:
        return unscored(f"the row names itself as its parent ({parent!r})")
    try:
        parent_path = catalog.parent_video(parent)
    except KeyError:
        return unscored(f"parent {parent!r} is neither in the output nor rolled out (pass parents= / --parents)")
    try:
        values, drift = drift_per_frame(cache.frames(row.video), cache.frames(parent_path))
    except (ValueError, FileNotFoundError) as exc:
        return unscored(str(exc))
    finite = [v for v in values if v is not None]
    mean_drift = round(statistics.fmean(drift), 4)
    return QCScore(
        row_id=row.row_id, parent_row_id=parent, drift_db=mean_drift, max_drift_db=max(drift),
        mean_psnr_db=round(statistics.fmean(finite), 3) if finite else None, psnr_db=values,
        drift_per_frame_db=drift, flagged=mean_drift > threshold_db,
    )
