"""Regression guard: our DiT backbone equals diffusers' Cosmos-Predict2.5 transformer.

diffusers' ``CosmosTransformer3DModel`` (PyPI) is the same backbone as DreamDojo's DiT
without the action path. With tiny random weights mapped from our layout to diffusers'
and our action MLPs zeroed, both must give the same velocity to float32 tolerance. This
guards every block, the RoPE tables, the timestep embedding and the final layer against
future edits, with no NVIDIA code and no GPU.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dream.engine.models.dreamdojo.config import DREAMDOJO_TINY, DiTConfig
from dream.engine.models.dreamdojo.dit import DreamDojoDiT, init_random_weights

diffusers = pytest.importorskip("diffusers")
CosmosTransformer3DModel = getattr(diffusers, "CosmosTransformer3DModel", None)
if CosmosTransformer3DModel is None:  # pragma: no cover - diffusers < 0.33
    pytest.skip(f"diffusers {diffusers.__version__} has no CosmosTransformer3DModel", allow_module_level=True)

# The tiny test config, with the 2B model's RoPE extrapolation (3.0 on h and w) so the NTK
# scaling is exercised too.
CFG: DiTConfig = replace(DREAMDOJO_TINY.dit, rope_h_extrapolation_ratio=3.0, rope_w_extrapolation_ratio=3.0)

# Block sub-module names: ours → diffusers'.
_BLOCK_MAP = {
    "self_attn.q_proj": "attn1.to_q",
    "self_attn.k_proj": "attn1.to_k",
    "self_attn.v_proj": "attn1.to_v",
    "self_attn.output_proj": "attn1.to_out.0",
    "self_attn.q_norm": "attn1.norm_q",
    "self_attn.k_norm": "attn1.norm_k",
    "cross_attn.q_proj": "attn2.to_q",
    "cross_attn.k_proj": "attn2.to_k",
    "cross_attn.v_proj": "attn2.to_v",
    "cross_attn.output_proj": "attn2.to_out.0",
    "cross_attn.q_norm": "attn2.norm_q",
    "cross_attn.k_norm": "attn2.norm_k",
    "mlp.layer1": "ff.net.0.proj",
    "mlp.layer2": "ff.net.2",
    "adaln_modulation_self_attn.1": "norm1.linear_1",
    "adaln_modulation_self_attn.2": "norm1.linear_2",
    "adaln_modulation_cross_attn.1": "norm2.linear_1",
    "adaln_modulation_cross_attn.2": "norm2.linear_2",
    "adaln_modulation_mlp.1": "norm3.linear_1",
    "adaln_modulation_mlp.2": "norm3.linear_2",
}
_TOP_MAP = {
    "x_embedder.proj.1": "patch_embed.proj",
    "t_embedder.1.linear_1": "time_embed.t_embedder.linear_1",
    "t_embedder.1.linear_2": "time_embed.t_embedder.linear_2",
    "t_embedding_norm": "time_embed.norm",
    "crossattn_proj.0": "crossattn_proj.0",
    "final_layer.linear": "proj_out",
    "final_layer.adaln_modulation.1": "norm_out.linear_1",
    "final_layer.adaln_modulation.2": "norm_out.linear_2",
}


def diffusers_name(ours: str) -> str | None:
    """Our parameter name → diffusers' (None for the action path, which diffusers lacks)."""
    module, _, leaf = ours.rpartition(".")
    if module.startswith("action_embedder_"):
        return None
    if module.startswith("blocks."):
        _, index, rest = module.split(".", 2)
        return f"transformer_blocks.{index}.{_BLOCK_MAP[rest]}.{leaf}"
    return f"{_TOP_MAP[module]}.{leaf}"


def diffusers_twin(ours: DreamDojoDiT) -> torch.nn.Module:
    """A CosmosTransformer3DModel configured as our backbone, holding our weights."""
    cfg = ours.cfg
    twin = CosmosTransformer3DModel(
        # + condition mask + padding mask, both passed as `condition_mask` (diffusers' own
        # padding-mask path resizes with torchvision, which the [torch] extra does not pull in)
        in_channels=cfg.latent_channels + 2,
        out_channels=cfg.latent_channels,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        num_layers=cfg.num_blocks,
        mlp_ratio=cfg.mlp_ratio,
        text_embed_dim=cfg.crossattn_emb_channels,
        adaln_lora_dim=cfg.adaln_lora_dim,
        patch_size=(cfg.patch_temporal, cfg.patch_spatial, cfg.patch_spatial),
        rope_scale=(cfg.rope_t_extrapolation_ratio, cfg.rope_h_extrapolation_ratio, cfg.rope_w_extrapolation_ratio),
        concat_padding_mask=False,
        extra_pos_embed_type=None,
        use_crossattn_projection=True,
        crossattn_proj_in_channels=cfg.crossattn_proj_in_channels,
        encoder_hidden_states_channels=cfg.crossattn_emb_channels,
    ).eval()
    mapped = {}
    for name, tensor in ours.state_dict().items():
        target = diffusers_name(name)
        if target is not None:
            mapped[target] = tensor
    missing, unexpected = twin.load_state_dict(mapped, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    # diffusers' Attention builds its q/k RMSNorms with eps 1e-5; the Cosmos recipe (and
    # NVIDIA's network, which ours matches exactly) uses 1e-6. Same maths, other constant.
    for module in twin.modules():
        if module.__class__.__name__ == "RMSNorm" and getattr(module, "eps", None) == 1e-5:
            module.eps = cfg.norm_eps
    return twin


def zero_action_path(model: DreamDojoDiT) -> None:
    with torch.no_grad():
        for module in (model.action_embedder_B_D, model.action_embedder_B_3D):
            for p in module.parameters():
                p.zero_()


@pytest.fixture(scope="module")
def pair() -> tuple[DreamDojoDiT, torch.nn.Module]:
    ours = DreamDojoDiT(CFG)
    init_random_weights(ours, seed=7)
    zero_action_path(ours)
    return ours.eval(), diffusers_twin(ours)


def _masks(mask: torch.Tensor) -> torch.Tensor:
    """Condition mask + an all-zero padding mask: the channels our patch embedding appends."""
    return torch.cat([mask, torch.zeros_like(mask)], dim=1)


def _inputs(b: int = 2, t: int = 4, h: int = 8, w: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((b, CFG.latent_channels, t, h, w), generator=g)
    mask = torch.zeros((b, 1, t, h, w))
    mask[:, :, 0] = 1.0
    return {
        "x": x,
        "mask": mask,
        "timesteps": torch.tensor([937, 412][:b], dtype=torch.int64),
        "actions": torch.randn((b, CFG.actions_per_latent_frame * (t - 1), CFG.action_dim), generator=g),
        "text": torch.randn((b, CFG.text_tokens, CFG.crossattn_proj_in_channels), generator=g),
    }


@pytest.mark.parametrize("text", ["random", "zeros"])
def test_backbone_equals_diffusers_cosmos_transformer(pair, text: str) -> None:
    ours, twin = pair
    inp = _inputs()
    text_emb = inp["text"] if text == "random" else torch.zeros_like(inp["text"])
    with torch.inference_mode():
        kv = ours.cross_attention_kv(ours.project_context(text_emb if text == "random" else None, batch=2))
        v_ours = ours(inp["x"], inp["timesteps"], inp["actions"], inp["mask"], kv)
        v_ref = twin(
            hidden_states=inp["x"],
            timestep=inp["timesteps"].float() * CFG.timestep_scale,
            encoder_hidden_states=text_emb,
            condition_mask=_masks(inp["mask"]),
            return_dict=False,
        )[0]
    assert v_ours.shape == v_ref.shape
    assert v_ref.abs().mean() > 0.1  # a real signal, not two zeros
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-4, atol=1e-5)


def test_the_guard_sees_a_changed_block(pair) -> None:
    """A perturbed weight in one block breaks the equality: the comparison has teeth."""
    ours, twin = pair
    inp = _inputs(b=1)
    with torch.inference_mode():
        kv = ours.cross_attention_kv(ours.project_context(inp["text"][:1]))
        before = ours(inp["x"], inp["timesteps"], inp["actions"], inp["mask"], kv)
        weight = twin.transformer_blocks[1].ff.net[2].weight
        saved = weight.clone()
        weight.mul_(1.01)
        try:
            ref = twin(
                hidden_states=inp["x"],
                timestep=inp["timesteps"].float() * CFG.timestep_scale,
                encoder_hidden_states=inp["text"][:1],
                condition_mask=_masks(inp["mask"]),
                return_dict=False,
            )[0]
        finally:
            weight.copy_(saved)
    assert (before - ref).abs().max() > 1e-4
