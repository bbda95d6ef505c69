"""Response bodies as pydantic models: they document the API (OpenAPI, schemathesis).

Hot paths build plain dicts and JSON responses themselves; these models only describe
them, so every field name here must match what the services produce.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Open):
    """FastAPI-style error: ``detail`` is a string, a list (request validation) or, for 402, an object."""

    detail: Any = Field(description="message; for 402 an object with balance_mils and requested_mils")


class ModelSpecBlock(_Open):
    model_size: str
    embodiment: str
    action_dim: int
    chunk_size: int
    resolution: list[int] = Field(description="[H, W], height first")
    default_num_steps: int
    default_guidance: float
    runner: str
    output_kind: str
    encoder_name: str | None = None
    temporal_compression: int | None = None
    ckpt_repo: str | None = None
    base_model: str | None = None
    tokenizer: str | None = None


class ModelEntry(_Open):
    """wire-protocol §6.3."""

    slug: str
    name: str
    provider: str
    upstream_provider: dict[str, Any] | None = None
    category: str
    summary: str
    description: str
    intended_use: str
    training_data: str
    license: str
    links: dict[str, str]
    price_per_frame_usd: float
    is_flagship: bool
    is_benchmarked: bool
    active: bool
    spec: ModelSpecBlock
    benchmark: dict[str, Any] | None = None


class ModelList(_Open):
    object: str = "list"
    data: list[ModelEntry]


class RolloutEnvelope(_Open):
    """wire-protocol §7.2 (+ ``status`` for async mode)."""

    id: str
    object: str = "rollout"
    model: str
    created: int
    frames: int
    resolution: list[int]
    engine_wall_ms: float
    psnr_db: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    cost_usd: float
    video_url: str
    video_url_expires_at: int
    seed: int
    status: str = Field(description="queued | running | succeeded | failed")


class SpecsList(_Open):
    object: str = "list"
    specs: list[ModelEntry]
    default_spec: str
    default_price_usd_per_frame: float


class Status(_Open):
    object: str = "status"
    uptime_s: float
    ready: bool
    default_model: str
    models: list[dict[str, Any]]
    latency_24h: dict[str, Any]
    engine_latency_24h: dict[str, Any]


class Health(_Open):
    ok: bool


class Ready(_Open):
    ready: bool
    loading: bool
    models: dict[str, Any]


class Balance(_Open):
    object: str = "balance"
    customer_id: str
    balance_mils: int
    balance_cents: int
    balance_usd: float


class Transaction(_Open):
    id: str
    ts: float
    kind: str
    amount_mils: int
    amount_cents: int
    balance_after_mils: int
    balance_after_cents: int
    detail: str


class Transactions(_Open):
    object: str = "list"
    transactions: list[Transaction]


class TopupRequest(BaseModel):
    # Documented bounds only: the billing service checks them itself, with a message naming both.
    amount_cents: int = Field(description="500..1000000 ($5 to $10,000)",
                              json_schema_extra={"minimum": 500, "maximum": 1_000_000})


class TopupSession(_Open):
    session_id: str
    url: str
    amount_cents: int
    customer_id: str


class WebhookSecret(_Open):
    """The calling customer's secret for checking async-rollout webhooks (Standard Webhooks v1)."""

    object: str = "webhook_secret"
    secret: str = Field(description="whsec_<base64 key>: the HMAC-SHA256 key, base64 after the prefix")
    scheme: str = Field(description="how deliveries are signed: webhook-id, webhook-timestamp, webhook-signature")
    customer_id: str


class WebhookAck(_Open):
    received: bool
    credited_mils: int


class SessionEnvelope(_Open):
    """wire-protocol §13.1."""

    id: str
    object: str = "session"
    model: str
    state: str
    ws_url: str
    created: int
    frames_streamed: int
