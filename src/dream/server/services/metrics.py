"""Prometheus metrics and the rolling 24 h latency figures of ``/v1/status``.

One registry per app (not the process-global default), so several apps in one test
process never collide.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from dream._stats import RollingLatency

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Counters, histograms and gauges of one server."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "dream_http_requests", "HTTP requests by route template, method and status", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "dream_http_request_duration_seconds", "HTTP request wall time", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("dream_http_requests_in_flight", "HTTP requests being served", registry=r)
        self.rollouts = Counter("dream_rollouts", "Rollouts by spec and outcome", ["spec", "outcome"], registry=r)
        self.frames = Counter("dream_frames_generated", "Output frames generated", ["spec"], registry=r)
        self.engine_seconds = Histogram(
            "dream_engine_seconds", "Engine wall per engine call", ["spec"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.fused_batch_size = Histogram(
            "dream_fused_batch_size", "Rollouts per engine call from dynamic batching",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=r,
        )
        self.charged_mils = Counter("dream_charged_mils", "Mils charged for successful calls", ["spec"], registry=r)
        self.refunded_mils = Counter("dream_refunded_mils", "Mils refunded after failures", ["spec"], registry=r)
        self.replays = Counter("dream_idempotent_replays", "Requests answered from an idempotency record", ["kind"], registry=r)
        self.reruns = Counter(
            "dream_idempotent_reruns", "Replays run again uncharged: paid for on a replica whose result body is not here",
            ["kind"], registry=r,
        )
        self.rate_limited = Counter("dream_rate_limited", "Requests refused with 429", registry=r)
        self.sessions_open = Gauge("dream_sessions_open", "Streaming sessions open", registry=r)
        self.ready = Gauge("dream_ready", "1 when every spec is loaded and warmed up", registry=r)
        self.model_loaded = Gauge("dream_model_loaded", "1 when the spec is loaded", ["spec"], registry=r)
        # Rolling 24 h percentiles for /v1/status: whole-request and engine-only.
        self.request_latency = RollingLatency()
        self.engine_latency = RollingLatency()

    def render(self) -> bytes:
        return generate_latest(self.registry)
