"""CPU thread policy: how many torch threads, and how they wait.

Two things made CPU rollouts collapse on a busy machine (measured on a shared 2-core
VM: a pusht-96 rollout 3.5 s with torch's defaults against 0.38 s with this policy):

* torch's OpenMP runtime (GNU libgomp) busy-waits for a while at the end of every
  parallel region. When another process holds a core, the spinning threads burn the
  time slices the lagging thread needs, and every region ends late. OpenMP reads
  ``OMP_WAIT_POLICY`` once, when the runtime loads, so `prepare_torch_env` sets it to
  ``PASSIVE`` (sleep, don't spin) before torch is imported — unless the user set it.
* torch sizes its pool from the machine's cores, not from the CPUs this process may
  use: a container limited to 1 CPU on a 64-core host runs 64 threads that share one
  CPU's quota. `usable_cpus` reads the affinity mask and the cgroup quota (v2
  ``cpu.max``, v1 ``cpu.cfs_quota_us``) and the engine uses that many threads.

Neither changes results: the built-in model's bytes do not depend on the thread count
(see `dream.engine.runner.Runner.batch_invariant` and the pusht runner).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "check_threads", "prepare_torch_env", "set_torch_threads", "usable_cpus"]

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")

_warned_spin = False


def cgroup_cpu_limit(root: Path | str = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup quota allows (2.5 for "250000 100000"), or None when unlimited.

    Reads cgroup v2 ``cpu.max`` under `root`, else v1 ``cpu/cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us``; unreadable or malformed files count as no limit.
    """
    root = Path(root)
    try:
        quota, _, period = (root / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or 100000)
    except (OSError, ValueError, ZeroDivisionError):
        pass
    for base in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((base / "cpu.cfs_quota_us").read_text())
            period_us = int((base / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us <= 0 or period_us <= 0:
            return None
        return quota_us / period_us
    return None


def usable_cpus(*, cgroup_root: Path | str = CGROUP_ROOT) -> int:
    """CPUs this process may actually use: the affinity mask, capped by the cgroup quota (≥ 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def check_threads(threads: object, *, what: str = "threads") -> int | None:
    """None, or a positive int; ValueError naming the value otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{what} must be a positive int (or None for the CPUs this process may use); got {threads!r}")
    return threads


def prepare_torch_env() -> None:
    """Make OpenMP sleep instead of spinning while it waits, if it is not loaded yet.

    A no-op when the user set ``OMP_WAIT_POLICY`` themselves. When torch was imported
    before dream could set it, logs a warning once (the setting can no longer apply).
    """
    global _warned_spin
    if "OMP_WAIT_POLICY" in os.environ:
        return
    if "torch" in sys.modules:
        if not _warned_spin:
            _warned_spin = True
            logger.warning(
                "torch was imported before dream could set OMP_WAIT_POLICY=PASSIVE; its threads will "
                "busy-wait, which is slow when other processes share the CPUs. Set OMP_WAIT_POLICY=PASSIVE "
                "in the environment, or import dream's engine before torch."
            )
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads for the calling thread: `threads`, else `usable_cpus()`.

    Returns the count set. Call it on the thread that runs the model (OpenMP keeps the
    count per thread).
    """
    prepare_torch_env()
    import torch

    n = check_threads(threads) or usable_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
