"""Result and catalog types: defaults, wire shapes, deprecated aliases."""

from __future__ import annotations

import json
import warnings

import pytest

from dream.rollout import BatchRollout, Mp4Bytes, Rollout
from dream.types import (
    Benchmark,
    BillingBalance,
    BillingTransaction,
    ModelSpec,
    ModelSpecData,
    PredictResponse,
    TopupSession,
    UpstreamProvider,
)


def test_model_spec_from_dict_defaults_and_nulls() -> None:
    spec = ModelSpec.from_dict({"slug": "m", "name": None, "price_per_frame_usd": None, "spec": None, "active": True})
    assert spec.slug == "m" and spec.name == "" and spec.price_per_frame_usd == 0.0 and spec.active is True
    assert spec.arch == ModelSpecData() and spec.benchmark is None
    assert spec.upstream_provider == UpstreamProvider()
    with pytest.raises(ValueError, match="slug"):
        ModelSpec.from_dict({"name": "x"})


def test_model_spec_arch_properties() -> None:
    spec = ModelSpec.from_dict(
        {"slug": "m", "spec": {"action_dim": 384, "chunk_size": 12, "resolution": [480, 640], "default_num_steps": 35,
                               "model_size": "2B", "temporal_compression": 4}}
    )
    assert (spec.action_dim, spec.chunk_size, spec.resolution, spec.default_num_steps, spec.model_size) == (
        384, 12, (480, 640), 35, "2B")
    assert spec.arch.temporal_compression == 4
    assert ModelSpecData.from_dict({"resolution": [1]}).resolution == (0, 0)


def test_benchmark_from_falsy_is_none() -> None:
    assert Benchmark.from_dict(None) is None and Benchmark.from_dict({}) is None
    b = Benchmark.from_dict({"psnr_db": 22.35, "rollouts": "100", "notes": None})
    assert b.psnr_db == 22.35 and b.rollouts == 100 and b.notes == ""


def test_billing_derivations() -> None:
    assert BillingBalance.from_dict({"balance_mils": 12345}) == BillingBalance("", 12345, 123, 1.2345)
    assert BillingBalance.from_dict({"balance_cents": 7}).balance_mils == 700
    t = BillingTransaction.from_dict({"id": "x", "amount_mils": -245, "balance_after_mils": 9755, "kind": "debit"})
    assert (t.amount_cents, t.amount_usd, t.balance_after_cents) == (-2, -0.0245, 98)
    assert BillingTransaction.from_dict({"amount_cents": -3}).amount_mils == -300
    assert TopupSession.from_dict({"amount_cents": 2550}).amount_usd == 25.5


def test_rollout_json_envelope_round_trip_in_wire_order() -> None:
    env = {
        "id": "rollout_" + "a" * 32, "object": "rollout", "model": "pusht-96", "created": 1700000000, "frames": 49,
        "resolution": [96, 96], "engine_wall_ms": 12.5, "cost_usd": 0.0049, "video_url": "http://x/v.mp4",
        "video_url_expires_at": 1700003600, "seed": 3,
    }
    r = Rollout.from_json_envelope(env)
    assert r.num_frames == 49 and r.resolution == (96, 96) and r.request_id == env["id"]
    out = json.loads(r.to_json())
    assert list(out) == list(env)
    assert out == env
    scored = Rollout.from_json_envelope({**env, "psnr_db": 30.0, "ssim": None})
    assert list(json.loads(scored.to_json()))[7] == "psnr_db" and "ssim" not in json.loads(scored.to_json())


def test_rollout_envelope_defaults_for_missing_and_null() -> None:
    r = Rollout.from_json_envelope({"created": None, "resolution": None, "psnr_db": ""})
    assert (r.id, r.created, r.resolution, r.psnr_db, r.cost_usd) == ("", 0, (0, 0), None, 0.0)


def test_mp4_bytes_is_bytes_and_callable(tmp_path) -> None:
    r = Rollout(id="r", _mp4_cache=b"\x00\x00\x00\x18ftypmp42")
    assert isinstance(r.mp4_bytes, bytes) and isinstance(r.mp4_bytes, Mp4Bytes)
    assert r.mp4_bytes() == r.mp4_bytes == b"\x00\x00\x00\x18ftypmp42"
    assert r.save(tmp_path / "x.mp4").read_bytes() == bytes(r.mp4_bytes)
    with pytest.raises(ValueError, match="no video_url"):
        _ = Rollout(id="r").mp4_bytes


def test_rollout_equality_ignores_the_mp4_cache() -> None:
    assert Rollout(id="a", _mp4_cache=b"1") == Rollout(id="a", _mp4_cache=b"2")
    assert hash(Rollout(id="a", _mp4_cache=b"1")) == hash(Rollout(id="a"))


def test_deprecated_aliases_warn(tmp_path) -> None:
    r = Rollout(id="r", cost_usd=0.25, _mp4_cache=b"x")
    with pytest.warns(DeprecationWarning):
        assert r.estimated_charge_usd == 0.25
    with pytest.warns(DeprecationWarning):
        r.save_mp4(tmp_path / "a.mp4")


def test_legacy_and_batch_constructors() -> None:
    headers = {
        "x-dreamengine-request-id": "req_1", "x-dreamengine-engine-wall-ms": "12.5",
        "x-dreamengine-estimated-charge-usd": "0.0245", "x-dreamengine-customer-id": "cus_1",
        "x-dreamengine-psnr-db": "", "x-dreamengine-ssim": "0.9",
    }
    r = Rollout._from_legacy_response(b"mp4", headers)
    assert (r.id, r.engine_wall_ms, r.cost_usd, r.customer_id, r.psnr_db, r.ssim) == (
        "req_1", 12.5, 0.0245, "cus_1", None, 0.9)
    child = Rollout._from_batch_mp4(b"m", request_id="b1", engine_wall_ms=3.0)
    assert child.cost_usd == 0.0 and child.id == "b1"
    pr = PredictResponse(frames=None, request_id="q", engine_wall_ms=1.0, estimated_charge_usd=0.5, customer_id="c",
                         mp4_bytes=b"m")
    wrapped = Rollout.from_predict_response(pr)
    assert wrapped.request_id == "q" and wrapped.cost_usd == 0.5 and wrapped.mp4_bytes == b"m"


def test_batch_rollout_is_a_sequence() -> None:
    kids = [Rollout(id="b", _mp4_cache=bytes([i])) for i in range(3)]
    batch = BatchRollout(kids, "b", 3, 20.0, 0.0147, "local")
    assert len(batch) == 3 and list(batch) == kids and batch[1] is kids[1]
    assert batch.cost_usd == 0.0147 and batch.wall_s == 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sum(r.cost_usd for r in batch) == 0.0
