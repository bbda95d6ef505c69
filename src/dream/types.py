"""Result and catalog types shared by both transports (sdk-surface §9–§11).

Every ``from_dict`` tolerates missing and null fields the way the 0.5.0 SDK does:
strings default to ``""``, numbers to 0, booleans to False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BatchResponse",
    "Benchmark",
    "BillingBalance",
    "BillingTransaction",
    "ModelSpec",
    "ModelSpecData",
    "PredictResponse",
    "TopupSession",
    "UpstreamProvider",
]


def _str(x: Any) -> str:
    return str(x or "")


def _int(x: Any) -> int:
    return int(x or 0)


def _float(x: Any) -> float:
    return float(x or 0.0)


def _opt_str(x: Any) -> str | None:
    return None if x is None else str(x)


def _opt_float(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- legacy results


@dataclass
class PredictResponse:
    """Result of the byte-level ``Client.predict`` (legacy /v1/predict)."""

    frames: np.ndarray | None
    request_id: str
    engine_wall_ms: float
    estimated_charge_usd: float
    customer_id: str
    mp4_bytes: bytes


@dataclass
class BatchResponse:
    """Result of the byte-level ``Client.predict_batch`` (legacy /v1/predict/batch)."""

    rollouts: list[PredictResponse]
    request_id: str
    batch_size: int
    engine_wall_ms: float
    estimated_charge_usd: float
    customer_id: str


# --------------------------------------------------------------------------- catalog


@dataclass
class UpstreamProvider:
    """Who made the upstream model (display data)."""

    key: str = ""
    name: str = ""
    short_name: str = ""
    logo_url: str = ""
    homepage: str = ""
    huggingface_org: str = ""

    @classmethod
    def from_dict(cls, d: dict | None) -> UpstreamProvider:
        d = d or {}
        return cls(**{k: _str(d.get(k)) for k in cls.__dataclass_fields__})


@dataclass
class ModelSpecData:
    """A model's architecture and input contract (the wire's ``spec`` block)."""

    model_size: str = ""
    embodiment: str = ""
    action_dim: int = 0
    chunk_size: int = 0
    resolution: tuple[int, int] = (0, 0)
    default_num_steps: int = 0
    default_guidance: float = 0.0
    runner: str = ""
    output_kind: str = "video"
    encoder_name: str | None = None
    temporal_compression: int | None = None
    ckpt_repo: str | None = None
    base_model: str | None = None
    tokenizer: str | None = None
    # Beyond 0.5.0 (sent by our server, absent from others → defaults).
    fps: int = 0
    canonical_T: int = 0
    uses_num_steps: bool = True
    uses_guidance: bool = True
    uses_seed: bool = True
    action_low: float | None = None  # each action value's range; None: unbounded (or not sent)
    action_high: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> ModelSpecData:
        d = d or {}
        res = d.get("resolution") or (0, 0)
        try:
            resolution = (int(res[0]), int(res[1])) if len(res) >= 2 else (0, 0)
        except (TypeError, ValueError):
            resolution = (0, 0)
        tc = d.get("temporal_compression")
        return cls(
            model_size=_str(d.get("model_size")),
            embodiment=_str(d.get("embodiment")),
            action_dim=_int(d.get("action_dim")),
            chunk_size=_int(d.get("chunk_size")),
            resolution=resolution,
            default_num_steps=_int(d.get("default_num_steps")),
            default_guidance=_float(d.get("default_guidance")),
            runner=_str(d.get("runner")),
            output_kind=str(d.get("output_kind") or "video"),
            encoder_name=_opt_str(d.get("encoder_name")),
            temporal_compression=None if tc is None else int(tc),
            ckpt_repo=_opt_str(d.get("ckpt_repo")),
            base_model=_opt_str(d.get("base_model")),
            tokenizer=_opt_str(d.get("tokenizer")),
            fps=_int(d.get("fps")),
            canonical_T=_int(d.get("canonical_T")),
            uses_num_steps=bool(d.get("uses_num_steps", True)),
            uses_guidance=bool(d.get("uses_guidance", True)),
            uses_seed=bool(d.get("uses_seed", True)),
            action_low=_opt_float(d.get("action_low")),
            action_high=_opt_float(d.get("action_high")),
        )


@dataclass
class Benchmark:
    """Published benchmark figures of a model, when the server has them."""

    version: str = ""
    run_id: str = ""
    vs_baseline: str = ""
    speedup_x: float = 0.0
    bench_wall_s: float = 0.0
    engine_wall_ms: float = 0.0
    psnr_db: float = 0.0
    psnr_delta_db: float = 0.0
    ssim: float = 0.0
    ssim_delta: float = 0.0
    lpips: float = 0.0
    lpips_delta: float = 0.0
    cost_per_rollout_usd: float = 0.0
    rollouts: int = 0
    notes: str = ""

    @classmethod
    def from_dict(cls, d: dict | None) -> Benchmark | None:
        if not d:
            return None
        kwargs: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            conv = {"str": _str, "float": _float, "int": _int}[str(f.type)]
            kwargs[name] = conv(d.get(name))
        return cls(**kwargs)


@dataclass
class ModelSpec:
    """A catalog entry: what a model is, its price, and whether this deployment serves it."""

    slug: str
    name: str = ""
    provider: str = ""
    upstream_provider: UpstreamProvider = field(default_factory=UpstreamProvider)
    category: str = ""
    summary: str = ""
    description: str = ""
    intended_use: str = ""
    training_data: str = ""
    license: str = ""
    links: dict[str, str] = field(default_factory=dict)
    price_per_frame_usd: float = 0.0
    is_flagship: bool = False
    is_benchmarked: bool = False
    active: bool = False
    arch: ModelSpecData = field(default_factory=ModelSpecData)
    benchmark: Benchmark | None = None
    # Beyond 0.5.0: why an inactive model is inactive (e.g. which weights to fetch).
    status_message: str = ""

    @property
    def action_dim(self) -> int:
        return self.arch.action_dim

    @property
    def resolution(self) -> tuple[int, int]:
        return self.arch.resolution

    @property
    def chunk_size(self) -> int:
        return self.arch.chunk_size

    @property
    def model_size(self) -> str:
        return self.arch.model_size

    @property
    def default_num_steps(self) -> int:
        return self.arch.default_num_steps

    @property
    def default_guidance(self) -> float:
        return self.arch.default_guidance

    @property
    def fps(self) -> int:
        return self.arch.fps

    @property
    def canonical_T(self) -> int:
        return self.arch.canonical_T

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        if not d or not d.get("slug"):
            raise ValueError(f"model entry has no 'slug': {d!r}")
        return cls(
            slug=str(d["slug"]),
            name=_str(d.get("name")),
            provider=_str(d.get("provider")),
            upstream_provider=UpstreamProvider.from_dict(d.get("upstream_provider")),
            category=_str(d.get("category")),
            summary=_str(d.get("summary")),
            description=_str(d.get("description")),
            intended_use=_str(d.get("intended_use")),
            training_data=_str(d.get("training_data")),
            license=_str(d.get("license")),
            links=dict(d.get("links") or {}),
            price_per_frame_usd=_float(d.get("price_per_frame_usd")),
            is_flagship=bool(d.get("is_flagship")),
            is_benchmarked=bool(d.get("is_benchmarked")),
            active=bool(d.get("active")),
            arch=ModelSpecData.from_dict(d.get("spec")),
            benchmark=Benchmark.from_dict(d.get("benchmark")),
            status_message=_str(d.get("status_message")),
        )


# --------------------------------------------------------------------------- billing


@dataclass
class BillingBalance:
    """Prepaid balance of the key's customer. 1 mil = $0.0001."""

    customer_id: str
    balance_mils: int
    balance_cents: int
    balance_usd: float

    @classmethod
    def from_dict(cls, d: dict) -> BillingBalance:
        if d.get("balance_mils") is not None:
            mils = int(d["balance_mils"])
        elif d.get("balance_cents") is not None:
            mils = int(d["balance_cents"]) * 100
        else:
            mils = 0
        cents = int(d["balance_cents"]) if d.get("balance_cents") is not None else mils // 100
        usd = float(d["balance_usd"]) if d.get("balance_usd") is not None else mils / 10000
        return cls(customer_id=_str(d.get("customer_id")), balance_mils=mils, balance_cents=cents, balance_usd=usd)


@dataclass
class BillingTransaction:
    """One ledger entry: a debit (negative), credit or refund."""

    id: str
    ts: float
    kind: str
    amount_mils: int
    amount_cents: int
    amount_usd: float
    balance_after_mils: int
    balance_after_cents: int
    balance_after_usd: float
    detail: str

    @classmethod
    def from_dict(cls, d: dict) -> BillingTransaction:
        def mils_of(prefix: str) -> int:
            if d.get(f"{prefix}_mils") is not None:
                return int(d[f"{prefix}_mils"])
            if d.get(f"{prefix}_cents") is not None:
                return int(d[f"{prefix}_cents"]) * 100
            return 0

        def cents_of(prefix: str, mils: int) -> int:
            if d.get(f"{prefix}_cents") is not None:
                return int(d[f"{prefix}_cents"])
            return round(mils / 100)

        amount = mils_of("amount")
        after = mils_of("balance_after")
        return cls(
            id=_str(d.get("id")),
            ts=_float(d.get("ts")),
            kind=_str(d.get("kind")),
            amount_mils=amount,
            amount_cents=cents_of("amount", amount),
            amount_usd=amount / 10000,
            balance_after_mils=after,
            balance_after_cents=cents_of("balance_after", after),
            balance_after_usd=after / 10000,
            detail=_str(d.get("detail")),
        )


@dataclass
class TopupSession:
    """A checkout session to add credits; open ``url`` in a browser."""

    session_id: str
    url: str
    amount_cents: int
    amount_usd: float
    customer_id: str

    @classmethod
    def from_dict(cls, d: dict) -> TopupSession:
        cents = _int(d.get("amount_cents"))
        return cls(
            session_id=_str(d.get("session_id")),
            url=_str(d.get("url")),
            amount_cents=cents,
            amount_usd=cents / 100,
            customer_id=_str(d.get("customer_id")),
        )


def is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)
