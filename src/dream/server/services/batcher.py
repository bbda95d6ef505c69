"""Dynamic batching: concurrent single rollouts with the same spec and parameters run as
one fused engine call (`Engine.predict_fused`).

The first request for a batch key opens a window of `window_s`; requests with the same
key that arrive within it join the batch, which runs when the window closes or when it
holds `max_batch` rollouts. A batch key is (spec, T, num_steps, guidance): rollouts
fused together must share the sampler settings and length, while frames, actions and
seeds stay per rollout (each rollout's noise has its own generator, so its output does
not depend on its batch-mates). ``window_s = 0`` turns batching off: each rollout runs
alone, at once. `fusable` limits fusing to some specs: the server passes
`Engine.batch_invariant`, so fused rollouts keep the bytes of a single predict.

If a fused call fails, its rollouts are retried one by one, so one poisoned request
cannot fail its neighbours.

`collate` is the grouping rule as a plain function (tested without an event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from dream.engine.engine import EngineResult

logger = logging.getLogger("dream.server.batcher")


@dataclass(eq=False)
class BatchItem:
    """One single rollout waiting to run (inputs already validated)."""

    spec: str
    frame: np.ndarray  # uint8 (H, W, 3)
    actions: np.ndarray  # float32 (T, A)
    seed: int
    num_steps: int | None
    guidance: float | None
    future: asyncio.Future[ItemResult] | None = field(default=None, repr=False)
    customer: str = ""  # whose engine turn the call takes (fair scheduling)

    @property
    def key(self) -> Hashable:
        return (self.spec, int(self.actions.shape[0]), self.num_steps, self.guidance)


@dataclass(frozen=True)
class ItemResult:
    """One rollout's share of an engine call."""

    result: EngineResult  # the whole call (K rollouts)
    index: int  # this rollout's row in result.frames
    fused: int  # K: how many rollouts shared the call

    @property
    def frames(self) -> np.ndarray:
        return self.result.frames[self.index]  # uint8 (T + 1, H, W, 3)


def collate(items: Sequence[BatchItem], max_batch: int) -> list[list[BatchItem]]:
    """Group items by batch key (arrival order kept), each group split into ≤ max_batch."""
    groups: dict[Hashable, list[BatchItem]] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    out: list[list[BatchItem]] = []
    size = max(1, int(max_batch))
    for group in groups.values():
        out.extend(group[i : i + size] for i in range(0, len(group), size))
    return out


@dataclass
class _Open:
    items: list[BatchItem]
    timer: asyncio.Task[None] | None = None


class DynamicBatcher:
    """Fuses concurrent `submit`s; `run` does the engine call for a list of items (in `executor`)."""

    def __init__(
        self,
        run: Callable[[list[BatchItem]], EngineResult],
        *,
        window_s: float,
        max_batch: int,
        executor: Executor | None = None,
        on_batch: Callable[[int], Any] | None = None,
        fusable: Callable[[str], bool] | None = None,
        gate: Callable[[list[BatchItem]], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self._run = run
        self._fusable = fusable  # spec slug -> may its rollouts share a call? (None: all may)
        self.window_s = max(0.0, float(window_s))
        self.max_batch = max(1, int(max_batch))
        self._executor = executor
        self._on_batch = on_batch
        self._gate = gate  # entered around every engine call (the fair scheduler's turn)
        self._open: dict[Hashable, _Open] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.max_batch > 1

    async def submit(self, item: BatchItem) -> ItemResult:
        loop = asyncio.get_running_loop()
        if not self.enabled or (self._fusable is not None and not self._fusable(item.spec)):
            return (await self._execute([item]))[0]
        item.future = loop.create_future()
        group = self._open.get(item.key)
        if group is None:
            group = self._open[item.key] = _Open([item])
            group.timer = loop.create_task(self._close_after(item.key, group))
        else:
            group.items.append(item)
        if len(group.items) >= self.max_batch:
            self._close(item.key, group)
        return await item.future

    async def _close_after(self, key: Hashable, group: _Open) -> None:
        await asyncio.sleep(self.window_s)
        self._close(key, group, from_timer=True)

    def _close(self, key: Hashable, group: _Open, *, from_timer: bool = False) -> None:
        if self._open.get(key) is not group:
            return
        del self._open[key]
        if group.timer is not None and not from_timer:
            group.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._dispatch(group.items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, items: list[BatchItem]) -> None:
        try:
            results = await self._execute(items)
        except BaseException as exc:  # handed to every waiter
            for it in items:
                if it.future is not None and not it.future.done():
                    it.future.set_exception(exc)
            return
        for it, res in zip(items, results, strict=True):
            if it.future is not None and not it.future.done():
                if isinstance(res, BaseException):
                    it.future.set_exception(res)
                else:
                    it.future.set_result(res)

    async def _call(self, items: list[BatchItem]) -> EngineResult:
        loop = asyncio.get_running_loop()
        async with self._gate(items) if self._gate is not None else contextlib.nullcontext():
            return await loop.run_in_executor(self._executor, self._run, items)

    async def _execute(self, items: list[BatchItem]) -> list[Any]:
        """Run `items` fused; if that fails and K > 1, one by one. Single failures raise."""
        if self._on_batch is not None:
            self._on_batch(len(items))
        if len(items) == 1:
            return [ItemResult(await self._call(items), 0, 1)]
        try:
            result = await self._call(items)
        except Exception as exc:
            logger.warning("fused batch of %d failed (%s); running its rollouts one by one", len(items), exc)
            out: list[Any] = []
            for it in items:
                try:
                    out.append(ItemResult(await self._call([it]), 0, 1))
                except Exception as single_exc:  # this rollout's own outcome
                    out.append(single_exc)
            return out
        return [ItemResult(result, k, len(items)) for k in range(len(items))]
