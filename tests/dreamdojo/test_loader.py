"""Strict loading of DiT checkpoints in every format, with loud errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

from dream.engine.models.dreamdojo.config import DREAMDOJO_TINY
from dream.engine.models.dreamdojo.convert import convert_checkpoint
from dream.engine.models.dreamdojo.dit import DreamDojoDiT
from dream.engine.models.dreamdojo.loader import (
    expected_shapes,
    find_dit_checkpoint,
    is_ignored_key,
    load_dit_state_dict,
)
from dream.errors import EngineError, WeightsNotFoundError

# Keys NVIDIA checkpoints carry that are not weights of our module.
EXTRA_IGNORED = {
    "net.pos_embedder.seq": torch.arange(8.0),
    "net.pos_embedder.dim_spatial_range": torch.arange(4.0),
    "net.accum_video_sample_counter": torch.tensor(3),
    "net.blocks.0.self_attn.q_norm._extra_state": torch.zeros(2, dtype=torch.uint8),
}


def expected() -> dict[str, torch.Size]:
    with torch.device("meta"):
        return expected_shapes(DreamDojoDiT(DREAMDOJO_TINY.dit))


def save_pt(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def save_safetensors(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def save_dcp(state: dict, folder: Path) -> Path:
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(dict(state), checkpoint_id=str(folder), no_dist=True)
    return folder


def assert_same(loaded: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    model_keys = {k for k in state if not is_ignored_key(k)}
    assert set(loaded) == {k[len("net.") :] for k in model_keys}
    for k in model_keys:
        assert torch.equal(loaded[k[len("net.") :]], state[k]), k


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "dcp"])
def test_round_trip_each_format(fmt: str, tmp_path: Path, tiny_state) -> None:
    state = {**tiny_state, **EXTRA_IGNORED}
    if fmt == "pt":
        target = save_pt(state, tmp_path / "model_ema_bf16.pt")
    elif fmt == "safetensors":
        target = save_safetensors(state, tmp_path / "model.safetensors")
    else:
        target = save_dcp(state, tmp_path / "iter_000000010" / "model")
    loaded, report = load_dit_state_dict(target, expected())
    assert report.checkpoint.format == fmt
    assert_same(loaded, state)
    assert set(report.ignored_keys) == set(EXTRA_IGNORED)
    model = DreamDojoDiT(DREAMDOJO_TINY.dit)
    model.load_state_dict(loaded, strict=True)


def test_ignored_keys_are_logged_at_debug(tmp_path: Path, tiny_state, caplog) -> None:
    target = save_safetensors({**tiny_state, **EXTRA_IGNORED}, tmp_path / "model.safetensors")
    with caplog.at_level(logging.DEBUG, logger="dream.engine.models.dreamdojo.loader"):
        load_dit_state_dict(target, expected())
    assert "net.accum_video_sample_counter" in caplog.text and "net.pos_embedder.seq" in caplog.text


def test_dcp_with_ema_weights_prefers_ema(tmp_path: Path, tiny_state) -> None:
    ema = {"net_ema." + k[len("net.") :]: v + 1.0 for k, v in tiny_state.items()}
    target = save_dcp({**tiny_state, **ema}, tmp_path / "model")
    loaded, report = load_dit_state_dict(target, expected())
    assert report.prefix == "net_ema."
    k = "final_layer.linear.weight"
    assert torch.equal(loaded[k], tiny_state["net." + k] + 1.0)
    assert "net." + k in report.ignored_keys
    loaded_regular, _ = load_dit_state_dict(target, expected(), prefer_ema=False)
    assert torch.equal(loaded_regular[k], tiny_state["net." + k])


def test_pt_wrapped_in_model_key(tmp_path: Path, tiny_state) -> None:
    target = save_pt({"model": dict(tiny_state), "iteration": 5}, tmp_path / "model.pt")
    loaded, _ = load_dit_state_dict(target, expected())
    assert_same(loaded, tiny_state)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "dcp"])
def test_bad_keys_give_one_error_naming_them_all(fmt: str, tmp_path: Path, tiny_state) -> None:
    state = dict(tiny_state)
    del state["net.blocks.1.mlp.layer2.weight"]
    del state["net.t_embedding_norm.weight"]
    state["net.blocks.7.mystery.weight"] = torch.zeros(3)
    state["net.x_embedder.proj.1.weight"] = torch.zeros(64, 71)
    if fmt == "pt":
        target = save_pt(state, tmp_path / "m.pt")
    elif fmt == "safetensors":
        target = save_safetensors(state, tmp_path / "m.safetensors")
    else:
        target = save_dcp(state, tmp_path / "dcp")
    with pytest.raises(EngineError) as info:
        load_dit_state_dict(target, expected())
    msg = str(info.value)
    for name in (
        "net.blocks.1.mlp.layer2.weight",
        "net.t_embedding_norm.weight",
        "net.blocks.7.mystery.weight",
        "net.x_embedder.proj.1.weight (checkpoint (64, 71), model (64, 72))",
    ):
        assert name in msg
    assert "missing keys (2)" in msg and "unexpected keys (1)" in msg and "mis-shaped keys (1)" in msg
    assert not isinstance(info.value, WeightsNotFoundError)


def test_keys_without_net_prefix_are_unexpected(tmp_path: Path, tiny_state) -> None:
    state = {k[len("net.") :]: v for k, v in tiny_state.items()}
    target = save_safetensors(state, tmp_path / "m.safetensors")
    with pytest.raises(EngineError, match=r"unexpected keys .*blocks\.0\.mlp\.layer1\.weight"):
        load_dit_state_dict(target, expected())


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model.safetensors"
    with pytest.raises(WeightsNotFoundError, match=r"nope/model\.safetensors.*does not exist"):
        find_dit_checkpoint(missing)


def test_wrong_file_format_names_path_and_expectation(tmp_path: Path) -> None:
    bad = tmp_path / "weights.txt"
    bad.write_text("hello")
    with pytest.raises(EngineError, match=r"weights\.txt.*expected a \.safetensors, \.pt or \.pth"):
        find_dit_checkpoint(bad)
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(EngineError, match=r"model\.safetensors.*as safetensors"):
        load_dit_state_dict(corrupt, expected())
    corrupt_pt = tmp_path / "model.pt"
    corrupt_pt.write_bytes(b"garbage")
    with pytest.raises(EngineError, match=r"model\.pt"):
        load_dit_state_dict(corrupt_pt, expected())


def test_folder_without_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="no DreamDojo DiT checkpoint"):
        find_dit_checkpoint(tmp_path)


def test_dcp_folder_missing_a_shard_names_the_file(tmp_path: Path, tiny_state) -> None:
    folder = save_dcp(tiny_state, tmp_path / "model")
    shards = sorted(folder.glob("*.distcp"))
    assert shards
    shards[0].unlink()
    with pytest.raises(WeightsNotFoundError, match=rf"incomplete: missing {re.escape(shards[0].name)}"):
        load_dit_state_dict(folder, expected())


def test_pickled_pt_needs_explicit_trust(tmp_path: Path, tiny_state) -> None:
    import io

    state = {**tiny_state, "net.blocks.0.self_attn._extra_state": io.BytesIO(b"te")}
    target = save_pt(state, tmp_path / "model_ema_bf16.pt")
    with pytest.raises(EngineError, match="allow_pickle=True"):
        load_dit_state_dict(target, expected())
    loaded, report = load_dit_state_dict(target, expected(), allow_pickle=True)
    assert_same(loaded, tiny_state)
    assert "net.blocks.0.self_attn._extra_state" in report.ignored_keys


def test_discovery_prefers_converted_files_and_latest_iteration(tmp_path: Path, tiny_state) -> None:
    hub = tmp_path / "2B_GR1_post-train"
    save_dcp(tiny_state, hub / "iter_000000010" / "model")
    save_dcp(tiny_state, hub / "iter_000000020" / "model")
    (hub / "latest_checkpoint.txt").write_text("iter_000000010\n")
    ref = find_dit_checkpoint(tmp_path)
    assert ref.format == "dcp" and ref.path == hub / "iter_000000010" / "model"
    (hub / "latest_checkpoint.txt").unlink()
    assert find_dit_checkpoint(tmp_path).path == hub / "iter_000000020" / "model"
    save_pt(tiny_state, hub / "iter_000000010" / "model.pt")
    save_pt(tiny_state, hub / "iter_000000010" / "model_ema_bf16.pt")
    assert find_dit_checkpoint(tmp_path).path == hub / "iter_000000010" / "model_ema_bf16.pt"
    save_safetensors(tiny_state, tmp_path / "model.safetensors")
    assert find_dit_checkpoint(tmp_path).path == tmp_path / "model.safetensors"


def test_sharded_safetensors_folder(tmp_path: Path, tiny_state) -> None:
    keys = sorted(tiny_state)
    half = len(keys) // 2
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    save_safetensors({k: tiny_state[k] for k in keys[:half]}, shard_dir / "model-00001-of-00002.safetensors")
    save_safetensors({k: tiny_state[k] for k in keys[half:]}, shard_dir / "model-00002-of-00002.safetensors")
    loaded, report = load_dit_state_dict(shard_dir, expected())
    assert report.checkpoint.format == "safetensors"
    assert_same(loaded, tiny_state)


@pytest.mark.parametrize("fmt", ["pt", "dcp"])
def test_convert_to_safetensors_round_trip(fmt: str, tmp_path: Path, tiny_state, tiny_spec) -> None:
    state = {**tiny_state, **EXTRA_IGNORED}
    src = save_pt(state, tmp_path / "m.pt") if fmt == "pt" else save_dcp(state, tmp_path / "dcp")
    out = convert_checkpoint(src, tmp_path / "out", slug=tiny_spec.slug)
    assert out == tmp_path / "out" / "model.safetensors"
    loaded, report = load_dit_state_dict(out, expected())
    assert report.checkpoint.format == "safetensors" and not report.ignored_keys
    assert_same(loaded, tiny_state)
    half = convert_checkpoint(src, tmp_path / "half.safetensors", slug=tiny_spec.slug, dtype="bf16")
    loaded_half, _ = load_dit_state_dict(half, expected())
    assert all(v.dtype == torch.bfloat16 for v in loaded_half.values())


def test_convert_refuses_a_mismatched_checkpoint_and_writes_nothing(
    tmp_path: Path, tiny_state, tiny_spec
) -> None:
    state = dict(tiny_state)
    del state["net.final_layer.linear.weight"]
    src = save_pt(state, tmp_path / "m.pt")
    with pytest.raises(EngineError, match=r"net\.final_layer\.linear\.weight"):
        convert_checkpoint(src, tmp_path / "out.safetensors", slug=tiny_spec.slug)
    assert not list(tmp_path.glob("out.safetensors*"))


def test_dcp_folder_of_something_else_says_what_it_holds(tmp_path: Path) -> None:
    folder = save_dcp(
        {"optimizer.state.0": torch.zeros(2), "scheduler.step": torch.zeros(1)}, tmp_path / "optim"
    )
    with pytest.raises(EngineError, match=r"no net\.\* or net_ema\.\* entries.*optimizer, scheduler"):
        load_dit_state_dict(folder, expected())
