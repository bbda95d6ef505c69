"""dream on Ray Data (the ``[ray]`` extra): bulk rollouts across actors, GPUs and nodes.

Building blocks for your own Ray pipelines::

    import ray
    from dream.ray import RolloutDatasink, RolloutPredictor, SourceDatasource

    ds = ray.data.read_datasource(SourceDatasource(dream.io.frames_from_dir("./episodes")))
    ds = ds.map_batches(RolloutPredictor, fn_constructor_kwargs={"spec": "pusht-96"},
                        concurrency=8, num_gpus=1, batch_size=8)
    ds.write_datasink(RolloutDatasink("./out"))

and the one-call form, which returns what `Client.predict_many` returns::

    result = dream.ray.predict_many(src, sink, spec="pusht-96", num_actors=8, num_gpus_per_actor=1)

The runner lives in `dream.bulk.ray`, beside the thread runner (`dream.bulk.threads`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dream.bulk.ray import RolloutDatasink, RolloutPredictor, SourceDatasource, run_predict_many_ray

if TYPE_CHECKING:
    from dream.bulk.run import PredictManyResult
    from dream.io.types import IterableSource, RolloutSink

__all__ = ["RolloutDatasink", "RolloutPredictor", "SourceDatasource", "predict_many"]


def predict_many(
    source: IterableSource,
    sink: RolloutSink,
    *,
    spec: str | None,
    num_actors: int,
    num_gpus_per_actor: float = 0,
    num_cpus_per_actor: float = 1,
    address: str | None = None,
    seed: int = 0,
    num_steps: int | None = None,
    guidance: float | None = None,
    on_error: str = "skip",
    resume: bool = True,
    progress: bool = True,
    retries: int | None = None,
    batch_size: int = 4,
    fuse: bool | None = None,
) -> PredictManyResult:
    """One rollout per row of `source` into `sink`, on `num_actors` Ray actors.

    Each actor holds one engine (weights loaded once, torch threads = its CPUs, on a GPU
    when `num_gpus_per_actor` > 0); the driver writes the sink. Same guarantees as
    `Client.predict_many`: failed rows are recorded (``on_error="skip"``) or stop the
    run (``"halt"``); a killed actor's rows are retried on a restarted one and no row
    is written twice; a rerun after the driver was killed (``resume=True``) skips the
    rows the sink holds and redoes the rest. `address`: None or "local" starts a local
    Ray, anything else joins that cluster. `batch_size` rows go to an actor at a time
    and are fused into one engine call when the model is batch-invariant (`fuse`: None
    decides by the model, True forces, False never).
    """
    return run_predict_many_ray(
        source, sink, spec=spec, num_actors=num_actors, num_gpus_per_actor=num_gpus_per_actor,
        num_cpus_per_actor=num_cpus_per_actor, address=address, seed=seed, num_steps=num_steps,
        guidance=guidance, on_error=on_error, resume=resume, progress=progress, retries=retries,
        batch_size=batch_size, fuse=fuse,
    )
