"""Scenarios of the differential test (issue 11), run unchanged by either SDK.

``python tests/server/diff_scenarios.py SCENARIO`` prints one JSON object of *facts*
(name -> a JSON value). tests/server/test_differential.py runs every scenario with the
official dream-engine 0.5.0 (.venv-official) and with ours, over HTTP against one
``dream serve`` and (ours only) embedded, and compares the facts.

Environment: SPEC, OUT, and DREAM_BASE_URL / DREAM_API_KEY for HTTP; EMBEDDED=1 runs our
embedded engine (then this repository's test specs are installed); SCRIPTED_URL for the
retry scenario. Only `dream`, numpy, PIL, pyarrow and the standard library are imported
(plus tests.server.tiny when embedded), so the official package runs it as well.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

import dream  # nothing else from dream is imported here: `attributes` checks what `import dream` gives

SPEC = os.environ.get("SPEC", "tiny-16")
RES = int(os.environ.get("RES", "16"))


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (RES, RES, 3), dtype=np.uint8)


def actions(T: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, (T, 2)).astype(np.float32)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def client(**kwargs):
    if os.environ.get("EMBEDDED"):
        return dream.Client(base_url="", **kwargs)
    return dream.Client(**kwargs)


# -- scenarios ---------------------------------------------------------------------------


def scenario_attributes() -> dict:
    """What 0.5.0 code reaches after a bare `import dream` (nothing imported by hand)."""
    facts: dict = {}
    for path in (
        "errors.AuthError", "errors.ValidationError", "errors.DreamError", "types.ModelSpec", "rollout.Rollout",
        "resources.models.ModelHandle", "examples.dreamdojo.dreamdojo_grasp", "io.RolloutSink", "io.SourceRow",
        "RetryPolicy", "ValidationError", "InputValidationError", "PredictManyResult", "CostEstimate",
    ):
        obj = dream
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            facts[f"attr.{path}"] = "ok"
        except AttributeError:
            facts[f"attr.{path}"] = "AttributeError"
    try:
        raise dream.AuthError("x")
    except dream.errors.AuthError:  # the idiom that failed while an error was being handled
        facts["except.errors.AuthError"] = "caught"
    facts["InputValidationError.bases"] = sorted(
        c.__name__ for c in dream.InputValidationError.__mro__ if c.__name__ in ("ValidationError", "ValueError", "DreamError")
    )
    return facts


def _classes() -> tuple[type, type]:
    """A custom source and sink as users write them (made on demand: `dream.io` must not be
    imported before the `attributes` scenario looks at what a bare `import dream` gives)."""

    class Rows(dream.io.IterableSource):
        rows_hint = 2

        def __iter__(self):
            for i in range(2):
                # The docs' data-augmentation metadata, plus a key that collides with the SDK's.
                meta = {"seed": i, "source_episode": f"ep{i}", "status": "raw"}
                yield dream.io.SourceRow(f"r{i}", png(frame(i)), npy(actions(4, i)), meta)

    class Capture(dream.io.RolloutSink):
        def __init__(self) -> None:
            self.records: list = []

        def write(self, record) -> None:
            self.records.append(record)

        def finalize(self) -> str:
            return "memory://"

    return Rows, Capture


def scenario_records() -> dict:
    """RolloutRecord.metadata handed to a custom sink, and the dir sink's Parquet schema."""
    import pyarrow.parquet as pq

    Rows, Capture = _classes()
    c = client()
    facts: dict = {}
    sink = Capture()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = c.predict_many(Rows(), sink, spec=SPEC, concurrency=1, progress=False)
    facts["records.ok"] = res.ok
    md = sorted(sink.records, key=lambda r: r.row_id)[0].metadata
    for key, value in md.items():
        facts[f"record.key.{key}"] = type(value).__name__
    facts["record.value.seed"] = md.get("seed")
    facts["record.value.source_episode"] = md.get("source_episode")
    facts["record.value.status"] = md.get("status")
    facts["record.value._source_status"] = md.get("_source_status")
    facts["record.value.spec"] = md.get("spec")
    facts["record.warning"] = sorted({w.category.__name__ for w in caught if "collide" in str(w.message)})
    out = Path(os.environ["OUT"]) / "sink"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c.predict_many(Rows(), dream.io.RolloutSink.dir(out), spec=SPEC, concurrency=1, progress=False)
    table = pq.read_table(out / "metadata.parquet")
    for field in table.schema:
        facts[f"parquet.col.{field.name}"] = str(field.type)
    first = sorted(table.to_pylist(), key=lambda r: r["row_id"])[0]
    facts["parquet.value.status"] = first["status"]
    facts["parquet.value.seed"] = first["seed"]
    facts["parquet.value.file_name"] = first["file_name"]
    return facts


def _error_facts(name: str, fn) -> dict:
    try:
        fn()
    except Exception as exc:
        return {
            f"error.{name}.class": type(exc).__name__,
            f"error.{name}.caught_by.ValidationError": isinstance(exc, dream.ValidationError),
            f"error.{name}.caught_by.DreamError": isinstance(exc, dream.DreamError),
            f"error.{name}.caught_by.ValueError": isinstance(exc, ValueError),
        }
    return {f"error.{name}.class": None}


def scenario_errors() -> dict:
    c = client()
    m = c.models.get(SPEC)
    facts: dict = {}
    facts.update(_error_facts("frame_bytes_not_an_image", lambda: m.predict(start_frame=b"not an image", actions=actions())))
    facts.update(_error_facts("actions_wrong_width", lambda: m.predict(start_frame=frame(), actions=np.zeros((4, 5), np.float32))))
    facts.update(_error_facts("unknown_model", lambda: c.models.get("no-such-model")))
    return facts


def scenario_attempts() -> dict:
    """predict_many against a scripted server: 503, 503, 503, 200 for one row, then 500."""
    base = os.environ["SCRIPTED_URL"]
    policy = dream.RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.02, jitter=False)
    c = dream.Client(base_url=base, api_key="dre_scripted", retry_policy=policy)
    facts: dict = {}
    for label in ("transient_then_ok", "server_error"):
        out = Path(os.environ["OUT"]) / label
        res = c.predict_many(dream.io.frames_from_dir(_one_row_dir(out)), dream.io.RolloutSink.dir(out / "sink"),
                             concurrency=1, progress=False)
        facts[f"attempts.{label}.ok"] = res.ok
        facts[f"attempts.{label}.failed"] = res.failed
        facts[f"attempts.{label}.failure_attempts"] = [f.attempts for f in res.failures]
        facts[f"attempts.{label}.failure_class"] = [type(f.error).__name__ for f in res.failures]
    return facts


def _one_row_dir(out: Path) -> Path:
    rows = out / "rows"
    rows.mkdir(parents=True, exist_ok=True)
    (rows / "ep0.png").write_bytes(png(frame(7)))
    (rows / "ep0.npy").write_bytes(npy(actions(4, 7)))
    return rows


def scenario_warmup() -> dict:
    """A script run right after `dream serve` starts, while its model still loads."""
    c = client()
    r = c.models.get(SPEC).predict(start_frame=frame(3), actions=actions(4, 3))
    return {"warmup.predict": "ok" if len(r.mp4_bytes()) > 0 else "empty"}


if __name__ == "__main__":
    if os.environ.get("EMBEDDED"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from tests.server import tiny

        tiny.install()
    print(json.dumps(globals()[f"scenario_{sys.argv[1]}"](), default=str))
