"""The DiT: NVIDIA's key layout at 2B, and inference features that must not change its output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dream.engine.models.dreamdojo.config import DREAMDOJO_TINY, DiTConfig
from dream.engine.models.dreamdojo.dit import DreamDojoDiT, StepCache, rope_3d


def test_2b_config_has_the_released_key_layout_and_size() -> None:
    cfg = DiTConfig()
    assert (cfg.in_channels, cfg.patch_dim, cfg.head_dim, cfg.action_embed_in) == (18, 72, 128, 1536)
    with torch.device("meta"):
        model = DreamDojoDiT(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "x_embedder.proj.1.weight": (2048, 72),
        "t_embedder.1.linear_1.weight": (2048, 2048),
        "t_embedder.1.linear_2.weight": (6144, 2048),
        "t_embedding_norm.weight": (2048,),
        "crossattn_proj.0.weight": (1024, 100352),
        "crossattn_proj.0.bias": (1024,),
        "action_embedder_B_D.fc1.weight": (8192, 1536),
        "action_embedder_B_D.fc1.bias": (8192,),
        "action_embedder_B_D.fc2.weight": (2048, 8192),
        "action_embedder_B_3D.fc2.weight": (6144, 8192),
        "action_embedder_B_3D.fc2.bias": (6144,),
        "blocks.27.self_attn.q_proj.weight": (2048, 2048),
        "blocks.27.self_attn.q_norm.weight": (128,),
        "blocks.27.cross_attn.k_proj.weight": (2048, 1024),
        "blocks.27.cross_attn.v_proj.weight": (2048, 1024),
        "blocks.27.cross_attn.output_proj.weight": (2048, 2048),
        "blocks.27.mlp.layer1.weight": (8192, 2048),
        "blocks.27.mlp.layer2.weight": (2048, 8192),
        "blocks.27.adaln_modulation_self_attn.1.weight": (256, 2048),
        "blocks.27.adaln_modulation_cross_attn.2.weight": (6144, 256),
        "blocks.27.adaln_modulation_mlp.2.weight": (6144, 256),
        "final_layer.linear.weight": (64, 2048),
        "final_layer.adaln_modulation.1.weight": (256, 2048),
        "final_layer.adaln_modulation.2.weight": (4096, 256),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "blocks.28.mlp.layer1.weight" not in shapes
    assert not any(
        k.endswith(".bias") for k in shapes if k.startswith("blocks.")
    )  # no biases in the backbone
    assert 2.1e9 < sum(v.numel() for v in model.parameters()) < 2.2e9


def tiny_inputs(b: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 16, 4, 4, 4, generator=gen)
    mask = torch.zeros(b, 1, 4, 4, 4)
    mask[:, :, 0] = 1
    timesteps = torch.tensor([999.0, 412.0][:b])
    actions = torch.randn(b, 12, 384, generator=gen)
    return x, timesteps, actions, mask


@torch.no_grad()
def test_fused_qkv_keeps_outputs_and_key_layout(make_tiny_dit) -> None:
    model = make_tiny_dit(0)
    kv = model.cross_attention_kv(model.project_context(None))
    args = tiny_inputs()
    before = model(*args, kv)
    keys_before = set(model.state_dict())
    model.fuse_qkv()
    assert set(model.state_dict()) == keys_before
    blk = model.blocks[0].self_attn
    assert blk.qkv_weight is not None
    assert blk.q_proj.weight.data_ptr() == blk.qkv_weight.data_ptr()  # views, no extra memory
    after = model(*args, kv)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_zero_text_embedding_projects_to_gelu_of_the_bias(make_tiny_dit) -> None:
    model = make_tiny_dit(0)
    cfg = DREAMDOJO_TINY.dit
    fast = model.project_context(None)
    slow = model.project_context(torch.zeros(1, cfg.text_tokens, cfg.crossattn_proj_in_channels))
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast[0, 0], F.gelu(model.crossattn_proj[0].bias))


@torch.no_grad()
def test_actions_change_the_velocity_and_frames_are_independent_in_batch(make_tiny_dit) -> None:
    model = make_tiny_dit(0)
    kv = model.cross_attention_kv(model.project_context(None))
    x, t, actions, mask = tiny_inputs()
    v1 = model(x, t, actions, mask, kv)
    v2 = model(x, t, actions * 0, mask, kv)
    assert not torch.allclose(v1, v2)
    single = model(x[:1], t[:1], actions[:1], mask[:1], kv)
    torch.testing.assert_close(single, v1[:1], rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_actions_of_the_wrong_shape_are_refused(make_tiny_dit) -> None:
    model = make_tiny_dit(0)
    kv = model.cross_attention_kv(model.project_context(None))
    x, t, actions, mask = tiny_inputs()
    with pytest.raises(ValueError, match=r"actions must be \(B=2, 12, 384\)"):
        model(x, t, actions[:, :8], mask, kv)


@torch.no_grad()
def test_step_cache_with_zero_threshold_is_exact(make_tiny_dit) -> None:
    model = make_tiny_dit(0)
    kv = model.cross_attention_kv(model.project_context(None))
    args = tiny_inputs()
    cache = StepCache(threshold=0.0, force=False)
    for _ in range(3):
        torch.testing.assert_close(model(*args, kv, step_cache=cache), model(*args, kv))
    assert cache.skipped_steps == 0 and cache.computed_steps == 6


@torch.no_grad()
def test_step_cache_reuses_the_residual_when_the_input_did_not_change(make_tiny_dit) -> None:
    model = make_tiny_dit(0)
    kv = model.cross_attention_kv(model.project_context(None))
    x, t, actions, mask = tiny_inputs()
    cache = StepCache(threshold=0.05)
    first = model(x, t, actions, mask, kv, step_cache=cache)  # forced: computes
    cache.force = False
    # Sample 0 unchanged (skips), sample 1 changed a lot (computes).
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1]) * 3
    second = model(x2, t, actions, mask, kv, step_cache=cache)
    assert cache.skipped_steps == 1 and cache.computed_steps == 3
    torch.testing.assert_close(second[0], first[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        second[1:], model(x2[1:], t[1:], actions[1:], mask[1:], kv), rtol=1e-4, atol=1e-5
    )


def test_rope_tables_cover_every_token_and_split_the_head_dim() -> None:
    cfg = DiTConfig()
    cos, sin = rope_3d(cfg, 4, 30, 40, torch.device("cpu"))
    assert cos.shape == sin.shape == (4 * 30 * 40, 128)
    # rotate-half layout: both halves carry the same angles; token 0 is angle 0 everywhere
    torch.testing.assert_close(cos[:, :64], cos[:, 64:])
    assert torch.all(cos[0] == 1) and torch.all(sin[0] == 0)
    # the first 44 dims rotate with time only: equal for tokens of the same frame
    assert torch.equal(cos[0, :22], cos[1, :22]) and not torch.equal(cos[0, :22], cos[1200, :22])


def test_bf16_inference_keeps_modulation_in_fp32(make_tiny_dit) -> None:
    model = make_tiny_dit(0).to_inference_dtype(torch.bfloat16)
    assert model.blocks[0].mlp.layer1.weight.dtype == torch.bfloat16
    assert model.blocks[0].adaln_modulation_mlp[2].weight.dtype == torch.float32
    assert model.t_embedder[1].linear_1.weight.dtype == torch.float32
    assert model.final_layer.linear.weight.dtype == torch.float32
    with torch.no_grad():
        kv = model.cross_attention_kv(model.project_context(None))
        out = model(*tiny_inputs(), kv)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
