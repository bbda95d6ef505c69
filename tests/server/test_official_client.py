"""The unmodified official dream-engine 0.5.0 client (from PyPI, in .venv-official) against a real
``dream serve``: it must work unchanged. Each scenario runs the official client in a subprocess
(tests/server/official_scenarios.py) and returns JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import REPO, SPEC, SPEC_RES

OFFICIAL_PY = REPO / ".venv-official" / "bin" / "python"
SCRIPT = Path(__file__).with_name("official_scenarios.py")

pytestmark = pytest.mark.skipif(
    not OFFICIAL_PY.exists(),
    reason="the official client's virtualenv .venv-official is missing; create it with `make official-client`",
)


@pytest.fixture
def official(live_server, tmp_path):
    def run(scenario: str, key: str = "official") -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DREAM_", "PYTHON"))}
        env.update(
            DREAM_BASE_URL=live_server.url, DREAM_API_KEY=live_server.keys[key], SPEC=SPEC, RES=str(SPEC_RES),
            OUT=str(tmp_path), OTHER_KEYS=json.dumps(live_server.keys),
        )
        # cwd outside the repo so `import dream` can only find the official package.
        proc = subprocess.run([str(OFFICIAL_PY), str(SCRIPT), scenario], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, f"{scenario} failed:\n{proc.stderr[-3000:]}\nserver log:\n{live_server.log()[-3000:]}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


def test_catalog(official) -> None:
    out = official("catalog")
    assert SPEC in out["slugs"] and out["active"] is True and out["action_dim"] == 2
    assert out["resolution"] == [SPEC_RES, SPEC_RES] and out["price"] == out["default_price"] > 0
    assert out["healthz"] == {"ok": True} and out["status_ready"] is True


def test_predict_via_rollouts_json_envelope(official) -> None:
    out = official("predict")
    assert out["id"].startswith("rollout_") and out["frames"] == 7 and out["model"] == SPEC
    assert out["resolution"] == [SPEC_RES, SPEC_RES] and out["cost_usd"] > 0 and out["mp4_len"] > 0
    assert "/v1/videos/" in out["video_url"] and "sig=" in out["video_url"]


def test_predict_via_the_predict_fallback(official) -> None:
    out = official("fallback")
    assert out["id"].startswith("req_") and out["model"] == "" and out["mp4_len"] > 0
    assert out["spent_mils"] == round(out["cost_usd"] * 10_000) > 0


def test_a_timed_out_rollout_resubmitted_to_predict_is_charged_once(official) -> None:
    out = official("timeout_fallback")
    assert out["spent_mils"] in (0, 5)  # one 4-action rollout (5 frames) at most, never two


def test_predict_batch(official) -> None:
    out = official("batch")
    assert out["batch_size"] == out["len"] == 3 and out["child_costs"] == [0.0, 0.0, 0.0]
    assert out["cost_usd"] > 0 and all(n > 0 for n in out["mp4_lens"])
    assert out["raw_batch_size"] == 2 and out["raw_request_id"].startswith("req_")


def test_predict_many_into_a_dir_sink(official) -> None:
    out = official("predict_many")
    assert out["ok"] == 3 and out["failed"] == 0 and out["videos"] == ["ep0.mp4", "ep1.mp4", "ep2.mp4"]
    assert out["metadata_specs"] == [SPEC] and out["statuses"] == [200] and out["spent_mils"] == 3 * 5


def test_billing(official) -> None:
    out = official("billing")
    assert out["customer_id"].startswith("cus_") and out["balance_mils"] > 0
    assert out["balance_usd"] == out["balance_mils"] / 10_000 and "credit" in out["kinds"]


def test_session(official) -> None:
    out = official("session")
    assert out["first"] == 7 and out["second"] == 2 and out["shape"] == [SPEC_RES, SPEC_RES, 3]
    assert out["frames_streamed"] == 9 and out["billing"]["debited_mils"] == 9 and out["closed"] is True


def test_error_paths(official) -> None:
    out = official("errors")
    assert out["auth"]["type"] == "AuthError" and out["auth"]["status_code"] == 401
    assert out["auth"]["request_id"].startswith("req_")
    assert out["revoked"]["type"] == "AuthError" and out["revoked"]["status_code"] == 403
    assert out["credits"]["type"] == "InsufficientCreditsError" and out["credits"]["status_code"] == 402
    assert out["credits"]["balance_mils"] == 3 and out["credits"]["requested_mils"] == 5
    assert out["rate"]["type"] == "RateLimitError" and out["rate"]["retry_after"] > 1
    assert out["validation"]["type"] == "ValidationError" and out["validation"]["status_code"] == 422
    assert "not a readable image" in out["validation"]["message"]
    assert out["action_dim"]["type"] == "ValidationError" and "action_dim mismatch" in out["action_dim"]["message"]
    assert out["too_big"]["type"] == "ValidationError" and out["too_big"]["status_code"] == 413
    # An unknown model on /v1/rollouts is 422, so 0.5.0 does not silently rerun it on /v1/predict.
    assert out["unknown_model"]["type"] == "ValidationError" and out["unknown_model"]["status_code"] == 422
    assert out["not_found"]["type"] == "ModelNotFoundError" and out["not_found"]["status_code"] == 404
