"""Readiness: green only once every served spec is loaded and warmed up.

Loading runs in a background thread at startup, so liveness (``/healthz``) answers at
once while readiness (``/readyz``) waits; a load balancer sends traffic only when ready.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dream.engine.engine import Engine

logger = logging.getLogger("dream.server.readiness")


class Readiness:
    def __init__(self, engine: Engine, specs: list[str], *, on_change: Any = None) -> None:
        self.engine = engine
        self.specs = list(specs)
        self.loaded: dict[str, float] = {}  # slug -> seconds it took
        self.errors: dict[str, str] = {}
        self._done = threading.Event()
        self._changed = threading.Condition()
        self._on_change = on_change
        self._thread: threading.Thread | None = None

    def is_loaded(self, slug: str) -> bool:
        return slug in self.loaded

    @property
    def ready(self) -> bool:
        return all(s in self.loaded for s in self.specs)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load_all, name="dream-load", daemon=True)
        self._thread.start()

    def mark_all_loaded(self) -> None:
        """Lazy mode (no preloading): every spec counts as servable; the first request loads it."""
        for slug in self.specs:
            self.loaded.setdefault(slug, 0.0)
        self._done.set()
        self._notify()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def wait_for(self, slug: str, timeout: float) -> bool:
        """Block until `slug` is loaded, has failed, or loading is over; True if loaded."""
        with self._changed:
            self._changed.wait_for(
                lambda: slug in self.loaded or slug in self.errors or self._done.is_set(), timeout=timeout
            )
        return slug in self.loaded

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _load_all(self) -> None:
        for slug in self.specs:
            status = weights_status(self.engine, slug)
            if not status.available:
                self.errors[slug] = status.message or "weights not found"
                logger.error("cannot serve %s: %s", slug, self.errors[slug])
                self._notify()
                continue
            t0 = time.perf_counter()
            try:
                self.engine.load(slug)
            except Exception as exc:
                self.errors[slug] = f"{type(exc).__name__}: {exc}"
                logger.exception("loading %s failed", slug)
                self._notify()
                continue
            self.loaded[slug] = time.perf_counter() - t0
            logger.info("%s loaded and warmed up in %.2f s", slug, self.loaded[slug])
            if self._on_change:
                self._on_change(slug)
            self._notify()
        self._done.set()
        self._notify()
        if self.ready:
            logger.info("ready: %s", ", ".join(self.specs))

    def summary(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "loading": not self.finished,
            "models": {
                s: {"loaded": s in self.loaded, "load_s": round(self.loaded.get(s, 0.0), 3), "error": self.errors.get(s)}
                for s in self.specs
            },
        }


def weights_status(engine: Engine, slug: str) -> Any:
    """`engine.weights_status`, turning a broken runner family into an unavailable status."""
    from dream.engine.runner import WeightsStatus

    try:
        return engine.weights_status(slug)
    except Exception as exc:  # reported, never fatal for the catalog
        return WeightsStatus(False, f"cannot check the weights of {slug}: {type(exc).__name__}: {exc}")
