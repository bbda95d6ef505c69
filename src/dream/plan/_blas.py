"""Pin numpy's BLAS to one thread around a planner's hot loop.

A planner's loop is many small numpy calls; with BLAS's default thread count on a loaded
machine the same batched rollout took 0.47–0.72 s instead of 10 ms (shared/planning
notes). threadpoolctl is used where it is installed; otherwise the OpenBLAS that numpy
loaded is found among the process's shared objects and its ``*_set_num_threads`` is
called through ctypes. Where neither works, nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import Any

_openblas: tuple[Any, Any] | bool | None = False  # (get, set), None when not found, False: not looked yet


def _find_openblas() -> tuple[Any, Any] | None:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if not path.startswith("/"):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                return get, set_
    return None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, numpy's BLAS runs one thread (restored after)."""
    global _openblas
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    if _openblas is False:
        _openblas = _find_openblas()
    if not _openblas:
        yield
        return
    get, set_ = _openblas  # type: ignore[misc]
    before = int(get())
    set_(1)
    try:
        yield
    finally:
        set_(before)


def blas_threads() -> int | None:
    """numpy's OpenBLAS thread count now (None when it cannot be read without threadpoolctl)."""
    global _openblas
    if _openblas is False:
        _openblas = _find_openblas()
    return int(_openblas[0]()) if _openblas else None  # type: ignore[index]
