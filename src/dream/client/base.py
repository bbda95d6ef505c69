"""What `Client` and `AsyncClient` share: configuration, transport choice, byte-level checks."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream._retry import RetryPolicy
from dream.errors import InputValidationError
from dream.inputs import MAX_ACTIONS_BYTES, MAX_FRAME_BYTES

if TYPE_CHECKING:
    from dream.bulk.estimate import CostEstimate
    from dream.bulk.rows import RowOutcome
    from dream.engine.engine import Engine
    from dream.types import PredictResponse

DEFAULT_TIMEOUT_S = 300.0
VALID_ON_ERROR = ("skip", "halt", "raise")


def resolve_api_key(api_key: str | None) -> str | None:
    """The `api_key=` argument, else DREAM_API_KEY, else the legacy DREAM_ENGINE_API_KEY."""
    return api_key or os.environ.get("DREAM_API_KEY") or os.environ.get("DREAM_ENGINE_API_KEY") or None


def resolve_base_url(base_url: str | None) -> str:
    """The `base_url=` argument, else DREAM_BASE_URL, else "" (the embedded engine)."""
    url = base_url if base_url is not None else os.environ.get("DREAM_BASE_URL", "")
    return url.rstrip("/")


class BaseClient:
    """Configuration shared by the sync and async clients.

    With neither ``base_url`` nor ``DREAM_BASE_URL`` the client runs the embedded engine
    in this process (DESIGN decision 1; ⚠ the 0.5.0 SDK defaults to its hosted URL,
    kept as ``DEFAULT_BASE_URL`` for reference). With one, it speaks the wire protocol.
    """

    DEFAULT_BASE_URL = "https://api.dreamengines.run"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_policy: RetryPolicy | None = None,
        engine: Engine | None = None,
        threads: int | None = None,
    ) -> None:
        from dream.engine.threads import check_threads

        self.api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.timeout_s = float(timeout_s)
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        if engine is not None and self.base_url:
            raise ValueError("engine= is for the embedded transport; it cannot be combined with a base_url")
        self._engine = engine
        self.threads = check_threads(threads)
        if threads is not None and (self.base_url or engine is not None):
            where = "a base_url" if self.base_url else "engine= (give Engine(threads=...) instead)"
            raise ValueError(f"threads= sets up the embedded engine this client creates; it cannot be combined with {where}")

    @property
    def is_local(self) -> bool:
        """True when this client runs the embedded engine in-process."""
        return not self.base_url

    def _options(self, **overrides: Any) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "timeout_s": self.timeout_s,
            "retry_policy": self.retry_policy,
        }
        unknown = set(overrides) - set(opts)
        if unknown:
            raise TypeError(f"with_options() got unexpected option(s): {', '.join(sorted(unknown))}")
        opts.update(overrides)
        return opts


def read_bytes_arg(data: bytes | None, path: str | Path | None, *, names: tuple[str, str], limit: int) -> bytes:
    """Byte-level input: bytes win over path; neither → ValueError naming both arguments."""
    if data is not None:
        return bytes(data)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputValidationError(f"{names[1]} does not exist: {str(p)!r}")
        if p.stat().st_size > limit:
            raise InputValidationError(f"{names[1]} {str(p)!r} is over the {limit}-byte limit")
        return p.read_bytes()
    raise ValueError(f"pass {names[0]}= or {names[1]}=")


def frame_bytes_arg(frame_bytes: bytes | None, frame_path: str | Path | None) -> bytes:
    return read_bytes_arg(frame_bytes, frame_path, names=("frame_bytes", "frame_path"), limit=MAX_FRAME_BYTES)


def actions_bytes_arg(actions_bytes: bytes | None, actions_path: str | Path | None) -> bytes:
    return read_bytes_arg(actions_bytes, actions_path, names=("actions_bytes", "actions_path"), limit=MAX_ACTIONS_BYTES)


def check_on_error(on_error: str) -> str:
    if on_error not in VALID_ON_ERROR:
        raise ValueError(f"on_error must be 'skip' or 'halt' ('raise' is an alias of 'halt'); got {on_error!r}")
    return "halt" if on_error == "raise" else on_error


def outcome_of(pr: PredictResponse, *, seed: int, num_steps: int | None, frames: int | None = None) -> RowOutcome:
    """A bulk row's outcome from one byte-level predict response."""
    from dream.bulk.rows import RowOutcome

    n = frames if frames is not None else (int(pr.frames.shape[0]) if pr.frames is not None else 0)
    return RowOutcome(
        mp4_bytes=pr.mp4_bytes,
        request_id=pr.request_id,
        engine_wall_ms=pr.engine_wall_ms,
        cost_usd=pr.estimated_charge_usd,
        frames=n,
        seed=seed,
        num_steps=num_steps,
    )


def _sleep_of(transport: Any) -> dict[str, Any]:
    """`sleep=` for the bulk runner: the transport's injected retry sleep, if it has one."""
    sleep = getattr(transport, "_sleep", None)
    return {"sleep": sleep} if callable(sleep) else {}


def served_slugs(specs: Any) -> list[str]:
    """The slugs a /v1/specs answer lists (rich entries, or an older server's bare strings)."""
    entries = specs.get("specs") if isinstance(specs, dict) else specs
    out: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        slug = entry.get("slug") if isinstance(entry, dict) else entry
        if isinstance(slug, str):
            out.append(slug)
    return out


def resolve_spec(specs: Any, spec: str | None) -> str | None:
    """The slug a run will use: `spec`, else the default the specs answer names.

    Raises ModelNotFoundError, naming the served slugs, when the answer lists specs and
    `spec` is not one of them (so a typo fails before any row, not on every row).
    """
    from dream.errors import ModelNotFoundError

    slugs = served_slugs(specs)
    if spec is None:
        default = specs.get("default_spec") if isinstance(specs, dict) else None
        return str(default) if default else None
    if slugs and spec not in slugs:
        raise ModelNotFoundError(
            f"unknown spec {spec!r}; served here: {', '.join(repr(s) for s in slugs)}",
            status_code=404,
        )
    return spec


def price_from_specs(specs: Any, spec: str | None, fallback: float = 0.0005) -> tuple[str, float]:
    """(slug, price per frame) from a /v1/specs answer (sdk-surface §17.3 lookup order)."""
    if not isinstance(specs, dict):
        return spec or "", fallback
    slug = spec or str(specs.get("default_spec") or "")
    for entry in specs.get("specs") or []:
        if isinstance(entry, dict) and entry.get("slug") == slug:
            price = entry.get("price_per_frame_usd")
            if isinstance(price, (int, float)) and math.isfinite(price):
                return slug, float(price)
    default = specs.get("default_price_usd_per_frame")
    if isinstance(default, (int, float)) and math.isfinite(default):
        return slug, float(default)
    return slug, fallback


def estimate_from(src: Any, *, spec: str, frames_per_row: int | None, price: float, wall_s: float | None) -> CostEstimate:
    from dream.bulk.estimate import estimate_cost_for

    return estimate_cost_for(src, spec=spec, frames_per_row=frames_per_row, price_per_frame_usd=price, rollout_wall_s=wall_s)
