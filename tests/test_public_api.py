"""The public surface: `dream.__all__`, import cost, and sync/async parity."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import dream

SDK_NAMES = {
    "Client", "AsyncClient", "RetryPolicy", "ModelHandle", "Models", "AsyncModelHandle", "AsyncModels",
    "ModelNotActiveError", "Billing", "AsyncBilling", "DreamError", "AuthError", "RateLimitError",
    "ModelNotFoundError", "ValidationError", "InsufficientCreditsError", "ServerError", "EngineError",
    "InputValidationError", "ModelSpec", "ModelSpecData", "UpstreamProvider", "Benchmark", "PredictResponse",
    "BatchResponse", "BillingBalance", "BillingTransaction", "TopupSession", "Rollout", "BatchRollout",
    "PredictManyResult", "FailedRow", "CostEstimate", "examples", "io", "__version__",
}


def test_all_is_the_36_names_of_the_sdk_surface() -> None:
    assert len(dream.__all__) == 36
    assert set(dream.__all__) == SDK_NAMES


def test_every_public_name_resolves() -> None:
    for name in dream.__all__:
        assert getattr(dream, name) is not None, name


def test_import_is_fast_and_loads_nothing_heavy() -> None:
    code = (
        "import sys, time, json; t = time.perf_counter(); import dream; dt = time.perf_counter() - t; "
        "print(json.dumps({'dt': dt, 'heavy': [m for m in ('numpy', 'httpx', 'PIL', 'torch', 'av') if m in sys.modules]}))"
    )
    best = min(
        (json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
         for _ in range(3)),
        key=lambda r: r["dt"],
    )
    assert best["heavy"] == []
    assert best["dt"] < 0.3


def test_submodules_are_attributes_without_importing_them_by_hand() -> None:
    # 0.5.0's `import dream` imports these, so `except dream.errors.AuthError` works; ours
    # must too, lazily (nothing heavy at import time).
    code = (
        "import sys, json, dream; "
        "names = [dream.errors.AuthError.__name__, dream.types.ModelSpec.__name__, dream.rollout.Rollout.__name__, "
        "dream.resources.models.ModelHandle.__name__, dream.examples.dreamdojo.dreamdojo_grasp.__name__]; "
        "print(json.dumps({'names': names}))"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["names"] == ["AuthError", "ModelSpec", "Rollout", "ModelHandle", "dreamdojo_grasp"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        dream.nonexistent  # noqa: B018


def test_version_is_ours_not_the_official_sdks() -> None:
    assert dream.__version__ != "0.5.0"
    out = subprocess.run([sys.executable, "-m", "dream.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert dream.__version__ in out.stdout and "0.5.0" not in out.stdout


def _public(cls: type) -> dict[str, inspect.Signature | None]:
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in ("__init__",):
            continue
        if callable(member):
            out[name] = inspect.signature(member)
        else:
            out[name] = None
    return out


@pytest.mark.parametrize(
    ("sync_cls", "async_cls", "sync_only", "async_only"),
    [
        (dream.Client, dream.AsyncClient, {"__enter__", "__exit__"}, {"__aenter__", "__aexit__"}),
        (dream.ModelHandle, dream.AsyncModelHandle, set(), set()),
        (dream.Models, dream.AsyncModels, set(), set()),
        (dream.Billing, dream.AsyncBilling, set(), set()),
    ],
)
def test_sync_and_async_twins_have_the_same_surface(sync_cls, async_cls, sync_only, async_only) -> None:
    s, a = _public(sync_cls), _public(async_cls)
    assert set(s) - sync_only == set(a) - async_only
    for name, sig in s.items():
        if name in sync_only or sig is None:
            continue
        a_sig = a[name]
        assert [p.name for p in sig.parameters.values()] == [p.name for p in a_sig.parameters.values()], name
        assert [p.default for p in sig.parameters.values()] == [p.default for p in a_sig.parameters.values()], name


def test_version() -> None:
    assert dream.__version__ == "0.6.0"
    from dream._version import __version__

    assert __version__ == dream.__version__
