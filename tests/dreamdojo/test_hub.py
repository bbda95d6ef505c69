"""`dream pull` argument construction and Hub-cache discovery, without any network access."""

from __future__ import annotations

from pathlib import Path

import pytest

from dream.engine.models.dreamdojo import hub
from dream.engine.models.dreamdojo.config import DREAMDOJO_2B
from dream.engine.models.dreamdojo.runner import DreamDojoRunner
from dream.engine.specs import get as get_spec
from dream.errors import EngineError

huggingface_hub = pytest.importorskip("huggingface_hub")


def test_download_plan_for_the_flagship() -> None:
    plan = hub.download_plan(DREAMDOJO_2B)
    assert [(p.repo_id, p.allow_patterns) for p in plan] == [
        ("nvidia/DreamDojo", ("2B_GR1_post-train/latest_checkpoint.txt", "2B_GR1_post-train/*/model/*")),
        ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", ("vae/config.json", "vae/*.safetensors")),
    ]


def test_pull_calls_snapshot_download_with_the_plan(monkeypatch, tmp_path: Path) -> None:
    calls: list[dict] = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return kwargs["local_dir"]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    dest = hub.pull("dreamdojo-2b-gr1", tmp_path, token="hf_x", revision="abc123")
    assert dest == tmp_path / "dreamdojo-2b-gr1"
    assert [c["repo_id"] for c in calls] == ["nvidia/DreamDojo", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]
    assert all(c["local_dir"] == str(dest) and c["token"] == "hf_x" for c in calls)
    assert calls[0]["revision"] == "abc123" and calls[1]["revision"] is None
    assert calls[0]["allow_patterns"] == [
        "2B_GR1_post-train/latest_checkpoint.txt",
        "2B_GR1_post-train/*/model/*",
    ]


def test_pull_defaults_to_the_weights_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DREAM_WEIGHTS_DIR", str(tmp_path / "root"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: kw["local_dir"])
    assert hub.pull("dreamdojo-2b-gr1") == tmp_path / "root" / "dreamdojo-2b-gr1"


def test_pull_failure_names_the_repository(monkeypatch, tmp_path: Path) -> None:
    def boom(**kwargs):
        raise OSError("401 gated")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", boom)
    with pytest.raises(EngineError, match=r"nvidia/DreamDojo.*401 gated.*accept its license"):
        hub.pull("dreamdojo-2b-gr1", tmp_path)


def test_pull_of_a_spec_without_hub_source(tiny_spec, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no Hub source"):
        hub.pull(tiny_spec.slug, tmp_path)


def fake_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str) -> Path:
    """A huggingface_hub cache entry (refs/main → snapshots/<commit>/...) built by hand."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for name, data in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return snapshot


def test_weights_in_the_hub_cache_are_found_offline(monkeypatch, tmp_path: Path, tiny_state) -> None:
    import os
    import warnings

    import torch.distributed.checkpoint as dcp

    cache = Path(os.environ["HF_HUB_CACHE"])
    spec = get_spec("dreamdojo-2b-gr1")
    assert not DreamDojoRunner.weights_status(spec).available

    dit_snapshot = fake_hub_cache(
        cache, "nvidia/DreamDojo", {"2B_GR1_post-train/latest_checkpoint.txt": b"iter_000000005"}, "a" * 40
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(
            dict(tiny_state),
            checkpoint_id=str(dit_snapshot / "2B_GR1_post-train/iter_000000005/model"),
            no_dist=True,
        )
    fake_hub_cache(
        cache,
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        {"vae/config.json": b"{}", "vae/diffusion_pytorch_model.safetensors": b""},
        "b" * 40,
    )
    status = DreamDojoRunner.weights_status(spec)
    assert status.available, status.message
    assert status.location == str(dit_snapshot / "2B_GR1_post-train" / "iter_000000005" / "model")
