"""The augmentation recipe: perturbed action sequences, rolled out, scored against their parent.

For every row of a source (a real episode: start frame + actions) `augment` rolls out

* the unperturbed **parent** (the row as it is, row id unchanged), and
* K **variants** (`<row_id>_aug00` … ): the row's actions plus Gaussian noise of standard
  deviation `noise` (in the actions' own units), drawn from a generator seeded by
  (`noise_seed`, the row id, the variant number), so a variant's actions never depend on
  the order rows run in, on other rows, or on K,

through `Client.predict_many` (its concurrency, retries and resume), then scores each
variant against its parent with the PSNR drift of `dream qc` (`dream.view.qc.drift_per_frame`:
per predicted frame, the PSNR drop the variant's departure adds on top of the parent's own
motion; 0 dB reproduces the parent). A variant whose mean drift passes `qc_max_drop`
(the product docs: "past 2-3 dB drop, the synthetic data is noticeably hallucinatory") is
dropped; only accepted variants reach the sink, then the parent, which closes its group.

Metadata added to the source's: variants carry `augment_role="variant"`, `parent_row_id`,
`variant`, `perturbation` ({kind, sigma, seed}), `qc_drift_db`, `qc_max_drift_db`,
`qc_mean_psnr_db`; parents carry `augment_role="parent"`, `augment_accepted`,
`augment_dropped` (ids) and `augment_variants` (K). Any sink works; with
`RolloutSink.lerobot` the parent link and the perturbation land in the episode's
`dream/parent_row_id` and `dream/perturbation` columns.

Resume: a parent in the sink means its group was decided (its accepted variants were
written before it), so a rerun skips the whole group; a group cut short by a kill is
redone, and variants the sink already holds are not written twice. Changing K or the
noise for a sink that already holds groups needs a new sink.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dream.io.types import IterableSource, RolloutRecord, RolloutSink, SourceRow

__all__ = ["AugmentResult", "AugmentSource", "VariantScore", "augment", "variant_id"]


def variant_id(row_id: str, k: int) -> str:
    """The row id of variant `k` of source row `row_id`."""
    return f"{row_id}_aug{k:02d}"


def _variant_seed(noise_seed: int, row_id: str, k: int) -> list[int]:
    digest = int.from_bytes(hashlib.sha256(row_id.encode("utf-8", "surrogatepass")).digest()[:8], "little")
    return [int(noise_seed), digest, int(k)]


class AugmentSource(IterableSource):
    """Each row of `source` as its parent followed by its K perturbed variants (module docstring)."""

    def __init__(self, source: IterableSource, *, variants: int, noise: float, noise_seed: int = 0) -> None:
        if isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
            raise ValueError(f"variants must be a positive int, got {variants!r}")
        if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0 (the std of the action noise), got {noise!r}")
        self.source = source
        self.variants = variants
        self.noise = float(noise)
        self.noise_seed = int(noise_seed)
        hint = getattr(source, "rows_hint", None)
        self.rows_hint = None if hint is None else int(hint) * (variants + 1)

    def perturbed(self, row_id: str, actions: Any, k: int) -> Any:
        """Variant `k`'s actions: `actions` + N(0, noise²), float32."""
        import numpy as np

        rng = np.random.default_rng(_variant_seed(self.noise_seed, row_id, k))
        noise = rng.standard_normal(actions.shape) * self.noise
        return (actions.astype(np.float64) + noise).astype(np.float32)

    def __iter__(self) -> Iterator[SourceRow]:
        import numpy as np

        for row in self.source:
            row_id = str(row.row_id)
            meta = dict(row.metadata or {})
            yield SourceRow(row_id, row.frame_bytes, row.actions_bytes, {**meta, "augment_role": "parent"}, row.error)
            actions = None
            error = row.error
            if error is None:
                try:
                    actions = np.load(io.BytesIO(row.actions_bytes), allow_pickle=False)
                    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.number):
                        raise ValueError(f"actions must be a numeric (T, action_dim) array, got {actions.dtype} "
                                         f"{actions.shape}")
                except ValueError as exc:
                    error = f"cannot perturb the row's actions: {exc}"
            for k in range(self.variants):
                vid = variant_id(row_id, k)
                extra = {
                    "augment_role": "variant",
                    "parent_row_id": row_id,
                    "variant": k,
                    "perturbation": {"kind": "gaussian", "sigma": self.noise,
                                     "seed": _variant_seed(self.noise_seed, row_id, k)},
                }
                if actions is None:
                    yield SourceRow(vid, b"", b"", {**meta, **extra}, error or "no actions")
                    continue
                buf = io.BytesIO()
                np.save(buf, self.perturbed(row_id, actions, k), allow_pickle=False)
                yield SourceRow(vid, row.frame_bytes, buf.getvalue(), {**meta, **extra})


@dataclass(frozen=True)
class VariantScore:
    """One variant's QC: its drift against the parent and whether it was kept."""

    row_id: str
    parent_row_id: str
    drift_db: float | None
    max_drift_db: float | None
    mean_psnr_db: float | None
    accepted: bool
    reason: str = ""  # why it was dropped ("drift 3.1 dB > 2 dB", "parent failed", …)


@dataclass
class AugmentResult:
    """What an augmentation run did."""

    parents: int = 0  # parent rollouts written (groups decided) in this run
    accepted: int = 0
    dropped: int = 0
    failed: int = 0  # rows that produced no rollout (listed by the sink / the run)
    skipped_groups: int = 0  # groups already decided in the sink (resume)
    scores: list[VariantScore] = field(default_factory=list)
    output_uri: str = ""
    wall_s: float = 0.0
    run: Any = None  # the PredictManyResult of the underlying run

    @property
    def dropped_scores(self) -> list[VariantScore]:
        return [s for s in self.scores if not s.accepted]


class _GroupingSink(RolloutSink):
    """Collects a parent and its variants, scores them, and forwards the accepted ones."""

    def __init__(self, sink: RolloutSink, *, variants: int, max_drop_db: float | None, result: AugmentResult) -> None:
        self.sink = sink
        self.variants = variants
        self.max_drop_db = max_drop_db
        self.result = result
        self.already = set(sink.finished_rows()) if callable(getattr(sink, "finished_rows", None)) else set()
        self._groups: dict[str, dict[str, tuple[bool, RolloutRecord]]] = {}
        self._lock = threading.Lock()

    def finished_rows(self) -> dict[str, dict[str, Any]]:
        rows = dict(self.sink.finished_rows())
        for row_id, params in list(rows.items()):
            for k in range(self.variants):
                rows.setdefault(variant_id(row_id, k), params)  # the group was decided
        return rows

    def _expected(self, parent: str) -> set[str]:
        return {parent} | {variant_id(parent, k) for k in range(self.variants)} - self.already

    def _add(self, record: RolloutRecord, ok: bool) -> None:
        meta = record.metadata or {}
        parent = str(meta.get("parent_row_id") or record.row_id) if meta.get("augment_role") == "variant" else str(
            record.row_id
        )
        with self._lock:
            group = self._groups.setdefault(parent, {})
            group[str(record.row_id)] = (ok, record)
            if set(group) >= self._expected(parent):
                del self._groups[parent]
                self._settle(parent, group)

    def write(self, record: RolloutRecord) -> None:
        self._add(record, True)

    def write_failure(self, record: RolloutRecord) -> None:
        self._add(record, False)

    def _settle(self, parent: str, group: dict[str, tuple[bool, RolloutRecord]]) -> None:
        from dream._decode import decode_mp4_to_ndarray
        from dream.view.qc import drift_per_frame

        parent_ok, parent_record = group.get(parent, (False, None))
        parent_frames = decode_mp4_to_ndarray(parent_record.mp4_bytes) if parent_ok and parent_record else None
        accepted: list[str] = []
        dropped: list[str] = []
        for row_id in sorted(set(group) - {parent}):
            ok, record = group[row_id]
            if not ok:
                self.result.failed += 1
                self._forward_failure(record)
                continue
            if parent_frames is None:
                score = VariantScore(row_id, parent, None, None, None, False, "parent failed: no reference to score")
            else:
                try:
                    psnrs, drift = drift_per_frame(decode_mp4_to_ndarray(record.mp4_bytes), parent_frames)
                except ValueError as exc:
                    score = VariantScore(row_id, parent, None, None, None, False, f"cannot score: {exc}")
                else:
                    mean_drift = sum(drift) / len(drift)
                    finite = [p for p in psnrs if p is not None]
                    keep = self.max_drop_db is None or mean_drift <= self.max_drop_db
                    score = VariantScore(
                        row_id, parent, round(mean_drift, 4), round(max(drift), 4),
                        round(sum(finite) / len(finite), 3) if finite else None, keep,
                        "" if keep else f"drift {mean_drift:.2f} dB > {self.max_drop_db:g} dB",
                    )
            self.result.scores.append(score)
            if score.accepted:
                accepted.append(row_id)
                self.result.accepted += 1
                if row_id not in self.already:
                    meta = dict(record.metadata)
                    meta.update(qc_drift_db=score.drift_db, qc_max_drift_db=score.max_drift_db,
                                qc_mean_psnr_db=score.mean_psnr_db)
                    self.sink.write(RolloutRecord(record.row_id, record.mp4_bytes, meta,
                                                  actions_bytes=record.actions_bytes))
            else:
                dropped.append(row_id)
                self.result.dropped += 1
        if parent_record is None:
            return
        meta = dict(parent_record.metadata)
        meta.update(augment_variants=self.variants, augment_accepted=len(accepted), augment_dropped=dropped)
        closing = RolloutRecord(parent_record.row_id, parent_record.mp4_bytes, meta,
                                actions_bytes=parent_record.actions_bytes)
        if parent_ok:
            self.result.parents += 1
            self.sink.write(closing)
        else:
            self.result.failed += 1
            self._forward_failure(closing)

    def _forward_failure(self, record: RolloutRecord) -> None:
        write_failure = getattr(self.sink, "write_failure", None)
        if callable(write_failure):
            write_failure(record)

    def finalize(self) -> str:
        # Groups still open were cut short (the run stopped): nothing of them is written, a
        # rerun redoes them.
        with self._lock:
            self._groups.clear()
        return self.sink.finalize()


def augment(
    source: IterableSource,
    sink: RolloutSink,
    *,
    variants: int,
    noise: float,
    qc_max_drop: float | None = 2.0,
    client: Any = None,
    spec: str | None = None,
    noise_seed: int = 0,
    seed: int = 0,
    concurrency: int = 2,
    on_error: str = "skip",
    retries: int | None = None,
    num_steps: int | None = None,
    guidance: float | None = None,
    resume: bool = True,
    progress: bool = True,
) -> AugmentResult:
    """Augment every row of `source` into `sink` (module docstring); returns the counts and scores.

    variants:    K perturbed variants per source row (>= 1).
    noise:       std of the Gaussian noise added to every action value, in action units.
    qc_max_drop: drop variants whose mean PSNR drift against the parent passes this many
                 dB (None: keep every scored variant).
    client:      a `dream.Client` (default: the embedded engine); `spec`, `seed`,
                 `concurrency`, `on_error`, `retries`, `num_steps`, `guidance`, `resume`
                 and `progress` go to its predict_many.
    """
    if qc_max_drop is not None and not (math.isfinite(qc_max_drop) and qc_max_drop >= 0):
        raise ValueError(f"qc_max_drop must be a finite number of dB >= 0 (or None), got {qc_max_drop!r}")
    expanded = AugmentSource(source, variants=variants, noise=noise, noise_seed=noise_seed)
    if client is None:
        import dream

        client = dream.Client()
    started = time.perf_counter()
    result = AugmentResult()
    grouping = _GroupingSink(sink, variants=variants, max_drop_db=qc_max_drop, result=result)
    run = client.predict_many(
        expanded, grouping, spec=spec, concurrency=concurrency, on_error=on_error, retries=retries,
        progress=progress, num_steps=num_steps, guidance=guidance, seed=seed, resume=resume,
    )
    result.run = run
    result.skipped_groups = run.skipped // (variants + 1)
    result.output_uri = run.output_uri
    result.wall_s = time.perf_counter() - started
    return result
