"""The DreamDojo action-conditioned diffusion transformer, in one readable file.

A clean-room PyTorch implementation of Cosmos-Predict2.5's "MiniTrainDIT" backbone with
DreamDojo's chunked action injection. Module names reproduce NVIDIA's state-dict layout
(``net.`` prefix stripped by the loader), so released checkpoints load key for key.

Stages (numbered the same in ``__init__`` and ``forward``):

1. Patch embedding: latent (16) + condition mask (1) + padding mask (1) channels, 1×2×2
   patches → Linear(72 → D).                                    ``x_embedder.proj.1``
2. RoPE-3D: rotary positions over (t, h, w) with NTK extrapolation; no learned positions.
3. Timestep + action embedding: sinusoid(t·0.001) → MLP → AdaLN-LoRA vector (3D); two
   action MLPs (GELU-tanh) add to the sinusoid (D) and to the AdaLN-LoRA vector (3D), one
   value per latent frame; RMSNorm of the D-vector.     ``t_embedder``, ``action_embedder_*``
4. Text context: the constant empty-prompt embedding, projected once 100352 → 1024.
                                                                       ``crossattn_proj``
5. Blocks: self-attention (RoPE, q/k RMSNorm), cross-attention to the text context and a
   GELU MLP, each with AdaLN-LoRA shift/scale/gate.                          ``blocks.N``
6. Final layer: AdaLN-modulated LayerNorm → Linear(D → 64), unpatchify.    ``final_layer``

Numerics follow the checkpoint's training recipe (Wan's "fp32 strategy"): the timestep
embedding, all AdaLN modulation vectors, RoPE on q/k and the final layer are computed in
float32 while the token stream and the big matmuls run in the model dtype (bf16 on GPU).

Speed features used at inference (none changes the state-dict layout):

- fused QKV (:meth:`DreamDojoDiT.fuse_qkv`): the self-attention q/k/v weights become views
  of one (3D, D) matrix so one GEMM computes all three;
- cross-attention K/V precomputed once per text context (:meth:`cross_attention_kv`),
  since the context is the same constant for every step of every rollout;
- step caching (:class:`StepCache`, TeaCache-style): when the modulated input of the first
  block changed little since the last computed step, the blocks are skipped and the last
  residual is reused, per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dream.engine.models.dreamdojo.config import DiTConfig

__all__ = ["CrossKV", "DreamDojoDiT", "StepCache", "init_random_weights"]

# (k, v) per block for cross-attention, each (B or 1, heads, N, head_dim).
CrossKV = list[tuple[torch.Tensor, torch.Tensor]]


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim, computed in float32, with a learned gain."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight.to(x.dtype)


class PatchRearrange(nn.Module):
    """(B, C, T, H, W) → (B, T', H', W', C·pt·ps·ps): channels outermost inside a patch."""

    def __init__(self, patch_temporal: int, patch_spatial: int) -> None:
        super().__init__()
        self.pt, self.ps = patch_temporal, patch_spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        pt, ps = self.pt, self.ps
        x = x.reshape(b, c, t // pt, pt, h // ps, ps, w // ps, ps)
        # [B, C, T', pt, H', ps, W', ps] -> [B, T', H', W', C, pt, ps, ps]
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(b, t // pt, h // ps, w // ps, c * pt * ps * ps)


class PatchEmbed(nn.Module):
    """Stage 1: non-overlapping patches → tokens (``proj.1`` is the only weight)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            PatchRearrange(cfg.patch_temporal, cfg.patch_spatial),
            nn.Linear(cfg.patch_dim, cfg.model_channels, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SinusoidalTimesteps(nn.Module):
    """Stage 3a: (B, T) scalars → (B, T, D) [cos | sin] features, in float32."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        angles = t.float()[..., None] * torch.exp(exponent)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepMLP(nn.Module):
    """Stage 3b: sinusoid (D) → SiLU MLP → AdaLN-LoRA vector (3D). No biases (AdaLN-LoRA)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.linear_2 = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, sinusoid: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.linear_1.weight, self.linear_2.weight
        return F.linear(F.silu(F.linear(sinusoid.to(w1.dtype), w1)), w2)


class ActionMlp(nn.Module):
    """Stage 3c: one latent frame's actions (4 × 384) → embedding; GELU-tanh, with biases."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _adaln_lora(dim: int, lora_dim: int, chunks: int) -> nn.Sequential:
    """SiLU → Linear(D → r) → Linear(r → chunks·D): keys ``.1.weight`` and ``.2.weight``."""
    return nn.Sequential(
        nn.SiLU(), nn.Linear(dim, lora_dim, bias=False), nn.Linear(lora_dim, chunks * dim, bias=False)
    )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with q/k RMSNorm; self-attention applies RoPE, cross-attention not."""

    def __init__(self, query_dim: int, context_dim: int, num_heads: int, head_dim: int, eps: float) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.q_proj = nn.Linear(query_dim, inner, bias=False)
        self.k_proj = nn.Linear(context_dim, inner, bias=False)
        self.v_proj = nn.Linear(context_dim, inner, bias=False)
        self.output_proj = nn.Linear(inner, query_dim, bias=False)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)
        self.qkv_weight: torch.Tensor | None = None  # set by fuse_qkv()

    def fuse_qkv(self) -> None:
        """Make q/k/v weights views of one (3·inner, D) matrix so one GEMM computes all three.

        Call after the module has its final device and dtype (``.to()`` afterwards would
        copy the views apart; still correct, but the memory saving is lost). The state-dict
        keys stay ``q_proj/k_proj/v_proj``.
        """
        q, k, v = self.q_proj.weight, self.k_proj.weight, self.v_proj.weight
        if not (q.shape[1] == k.shape[1] == v.shape[1]):
            raise ValueError("fuse_qkv needs q/k/v with the same input width (self-attention)")
        fused = torch.cat([q.detach(), k.detach(), v.detach()], dim=0)
        n = q.shape[0]
        self.q_proj.weight = nn.Parameter(fused[:n], requires_grad=False)
        self.k_proj.weight = nn.Parameter(fused[n : 2 * n], requires_grad=False)
        self.v_proj.weight = nn.Parameter(fused[2 * n :], requires_grad=False)
        self.qkv_weight = fused

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # [B, L, H*d] -> [B, L, H, d]
        return t.unflatten(-1, (self.num_heads, self.head_dim))

    def self_attention(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], fp32_rope: bool
    ) -> torch.Tensor:
        """x (B, L, D) → (B, L, D); rope = (cos, sin), each (L, head_dim) float32."""
        w = self.qkv_weight
        if w is not None and w.dtype == x.dtype and w.device == x.device:
            q, k, v = F.linear(x, w).chunk(3, dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q, k, v = self.q_norm(self._heads(q)), self.k_norm(self._heads(k)), self._heads(v)
        cos, sin = rope
        cos, sin = cos[:, None, :], sin[:, None, :]  # [L, 1, d] broadcast over heads
        work = torch.float32 if fp32_rope else q.dtype
        qf, kf = q.to(work), k.to(work)
        q = (qf * cos + _rotate_half(qf) * sin).to(v.dtype)
        k = (kf * cos + _rotate_half(kf) * sin).to(v.dtype)
        # [B, L, H, d] -> [B, H, L, d] for SDPA (flash / memory-efficient kernels on GPU)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.output_proj(out.transpose(1, 2).flatten(2))

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values of a context (B, N, C) → two (B, H, N, d) tensors."""
        k = self.k_norm(self._heads(self.k_proj(context)))
        v = self._heads(self.v_proj(context))
        return k.transpose(1, 2), v.transpose(1, 2)

    def cross_attention(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x (B, L, D) attends to precomputed (k, v) of batch B or 1 → (B, L, D)."""
        q = self.q_norm(self._heads(self.q_proj(x))).transpose(1, 2)
        k, v = kv
        if k.shape[0] != q.shape[0]:
            # Materialise the shared context's K/V per sample: fused SDPA kernels want real
            # batch strides (a few MB for the 512-token context).
            k = k.expand(q.shape[0], -1, -1, -1).contiguous()
            v = v.expand(q.shape[0], -1, -1, -1).contiguous()
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype))
        return self.output_proj(out.transpose(1, 2).flatten(2))


class GPT2FeedForward(nn.Module):
    """Linear(D → 4D) → GELU → Linear(4D → D), no biases."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden, bias=False)
        self.layer2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.gelu(self.layer1(x)))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm (no affine) then per-frame scale/shift. x (B, T, S, D); shift/scale (B, T, 1, D)."""
    normed = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return normed * (1 + scale.to(x.dtype)) + shift.to(x.dtype)


class Block(nn.Module):
    """Stage 5: self-attention, cross-attention and MLP, each with AdaLN-LoRA shift/scale/gate."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        d = cfg.model_channels
        self.eps = cfg.norm_eps
        self.fp32 = cfg.fp32_modulation
        self.self_attn = Attention(d, d, cfg.num_heads, cfg.head_dim, cfg.norm_eps)
        self.cross_attn = Attention(d, cfg.crossattn_emb_channels, cfg.num_heads, cfg.head_dim, cfg.norm_eps)
        self.mlp = GPT2FeedForward(d, int(d * cfg.mlp_ratio))
        self.adaln_modulation_self_attn = _adaln_lora(d, cfg.adaln_lora_dim, 3)
        self.adaln_modulation_cross_attn = _adaln_lora(d, cfg.adaln_lora_dim, 3)
        self.adaln_modulation_mlp = _adaln_lora(d, cfg.adaln_lora_dim, 3)

    def _mods(self, layer: nn.Sequential, emb: torch.Tensor, adaln_lora: torch.Tensor) -> list[torch.Tensor]:
        """shift, scale, gate, each (B, T, 1, D), from emb (B, T, D) and the LoRA vector (B, T, 3D)."""
        emb = emb.to(layer[1].weight.dtype)
        mods = layer(emb).float() + adaln_lora.float()
        return [m[:, :, None, :] for m in mods.chunk(3, dim=-1)]

    def self_attn_input(self, x: torch.Tensor, emb: torch.Tensor, adaln_lora: torch.Tensor) -> torch.Tensor:
        """The modulated input of the self-attention branch (TeaCache's change indicator)."""
        shift, scale, _ = self._mods(self.adaln_modulation_self_attn, emb, adaln_lora)
        return _modulate(x, shift, scale, self.eps)

    def forward(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        adaln_lora: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cross_kv: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """x (B, T, S, D) with S = H'·W' tokens per latent frame; emb (B, T, D); adaln_lora (B, T, 3D)."""
        b, t, s, d = x.shape
        shift, scale, gate = self._mods(self.adaln_modulation_self_attn, emb, adaln_lora)
        h = _modulate(x, shift, scale, self.eps).reshape(b, t * s, d)  # [B, T, S, D] -> [B, L, D]
        h = self.self_attn.self_attention(h, rope, self.fp32).reshape(b, t, s, d)
        x = x + gate.to(x.dtype) * h

        shift, scale, gate = self._mods(self.adaln_modulation_cross_attn, emb, adaln_lora)
        h = _modulate(x, shift, scale, self.eps).reshape(b, t * s, d)
        h = self.cross_attn.cross_attention(h, cross_kv).reshape(b, t, s, d)
        x = x + gate.to(x.dtype) * h

        shift, scale, gate = self._mods(self.adaln_modulation_mlp, emb, adaln_lora)
        h = self.mlp(_modulate(x, shift, scale, self.eps))
        return x + gate.to(x.dtype) * h


class FinalLayer(nn.Module):
    """Stage 6: AdaLN-modulated LayerNorm → Linear(D → ps·ps·pt·C_out)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        d = cfg.model_channels
        self.eps = cfg.norm_eps
        self.hidden = d
        out = cfg.patch_spatial**2 * cfg.patch_temporal * cfg.latent_channels
        self.linear = nn.Linear(d, out, bias=False)
        self.adaln_modulation = _adaln_lora(d, cfg.adaln_lora_dim, 2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, adaln_lora: torch.Tensor) -> torch.Tensor:
        """x (B, T, S, D) → (B, T, S, ps·ps·pt·C) in float32 when the layer is float32."""
        layer = self.adaln_modulation
        mods = layer(emb.to(layer[1].weight.dtype)).float() + adaln_lora[..., : 2 * self.hidden].float()
        shift, scale = (m[:, :, None, :] for m in mods.chunk(2, dim=-1))
        w = self.linear.weight
        normed = F.layer_norm(x.to(w.dtype), (x.shape[-1],), eps=self.eps)
        return self.linear(normed * (1 + scale.to(w.dtype)) + shift.to(w.dtype))


def rope_3d(
    cfg: DiTConfig, t: int, h: int, w: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: RoPE-3D cos/sin tables, each (t·h·w, head_dim) float32, tokens in (t, h, w) order.

    The head dim is split 2/6 height, 2/6 width and the rest time (42/42/44 for d = 128);
    each axis uses base θ·r^(d_axis/(d_axis − 2)) — NTK-aware extrapolation by ratio r.
    The frequencies are laid out [t | h | w] twice (rotate-half convention).
    """
    d = cfg.head_dim
    dim_h = d // 6 * 2
    dim_w = dim_h
    dim_t = d - 2 * dim_h

    def freqs(dim: int, ratio: float) -> torch.Tensor:
        theta = cfg.rope_theta * ratio ** (dim / (dim - 2))
        rng = torch.arange(0, dim, 2, dtype=torch.float32, device=device)[: dim // 2] / dim
        return 1.0 / theta**rng

    pos_t = torch.arange(t, dtype=torch.float32, device=device)
    pos_h = torch.arange(h, dtype=torch.float32, device=device)
    pos_w = torch.arange(w, dtype=torch.float32, device=device)
    ang_t = torch.outer(pos_t, freqs(dim_t, cfg.rope_t_extrapolation_ratio))  # [t, dim_t/2]
    ang_h = torch.outer(pos_h, freqs(dim_h, cfg.rope_h_extrapolation_ratio))  # [h, dim_h/2]
    ang_w = torch.outer(pos_w, freqs(dim_w, cfg.rope_w_extrapolation_ratio))  # [w, dim_w/2]
    grid = torch.cat(
        [
            ang_t[:, None, None, :].expand(t, h, w, -1),
            ang_h[None, :, None, :].expand(t, h, w, -1),
            ang_w[None, None, :, :].expand(t, h, w, -1),
        ],
        dim=-1,
    ).reshape(t * h * w, d // 2)  # [t, h, w, d/2] -> [L, d/2]
    angles = torch.cat([grid, grid], dim=-1)  # [L, d]
    return torch.cos(angles), torch.sin(angles)


@dataclass
class StepCache:
    """TeaCache-style step caching state for one sampling loop (one chunk of K rollouts).

    Before running the blocks, the DiT measures how much the modulated input of the first
    block changed since the last step at which the blocks were run, as a relative L1
    distance per sample, and accumulates it. While the accumulated change stays below
    ``threshold``, the blocks are skipped for that sample and its last block residual
    (output − input of the block stack) is reused; otherwise the blocks run and the
    accumulator resets. The pipeline sets ``force`` for steps that must be computed
    (the first steps and the last one). ``threshold = 0`` computes every step.
    """

    threshold: float
    force: bool = True
    computed_steps: int = 0  # sample-steps whose blocks ran
    skipped_steps: int = 0  # sample-steps that reused the residual
    _previous: torch.Tensor | None = field(default=None, repr=False)
    _accumulated: torch.Tensor | None = field(default=None, repr=False)
    _residual: torch.Tensor | None = field(default=None, repr=False)

    def decide(self, indicator: torch.Tensor) -> torch.Tensor:
        """Bool (B,) mask of samples whose blocks must run this step; updates the accumulators."""
        b = indicator.shape[0]
        flat = indicator.detach().float().reshape(b, -1)
        if self._previous is None or self._residual is None or self.force or self.threshold <= 0:
            compute = torch.ones(b, dtype=torch.bool, device=indicator.device)
            self._accumulated = torch.zeros(b, device=indicator.device)
        else:
            scale = self._previous.abs().mean(dim=1).clamp_min(1e-12)
            rel = (flat - self._previous).abs().mean(dim=1) / scale  # relative L1 change since last step
            acc = self._accumulated + rel
            compute = acc >= self.threshold
            self._accumulated = torch.where(compute, torch.zeros_like(acc), acc)
        self._previous = flat
        n = int(compute.sum())
        self.computed_steps += n
        self.skipped_steps += b - n
        return compute

    def reuse(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        assert self._residual is not None
        return x[skip] + self._residual[skip]

    def store(self, residual: torch.Tensor, compute: torch.Tensor) -> None:
        if self._residual is None:
            self._residual = residual.new_zeros((compute.shape[0], *residual.shape[1:]))
        self._residual[compute] = residual


class DreamDojoDiT(nn.Module):
    """Action-conditioned DiT: velocity of the latent video given time, actions and text context.

    ``forward`` takes the noisy latent chunk (B, 16, T, H, W), the condition mask
    (B, 1, T, H, W), per-sample integer timesteps (B,) (int(σ·1000)), the chunk's actions
    (B, 4·(T−1), action_dim) and the cross-attention K/V of the text context, and returns
    the predicted velocity ε − x0 with the latent's shape.
    """

    # Parameters kept in float32 when the rest of the model is cast to bf16 (they are
    # applied in float32 by the training recipe; see `to_inference_dtype`).
    _keep_in_fp32_modules = ("t_embedder", "t_embedding_norm", "adaln_modulation", "final_layer")

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.model_channels
        # 1. Patch embedding
        self.x_embedder = PatchEmbed(cfg)
        # 2. RoPE-3D has no parameters (tables cached per shape)
        self._rope_cache: dict[tuple[int, int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        # 3. Timestep + action embedding
        self.t_embedder = nn.Sequential(SinusoidalTimesteps(d), TimestepMLP(d))
        self.t_embedding_norm = RMSNorm(d, cfg.norm_eps)
        self.action_embedder_B_D = ActionMlp(cfg.action_embed_in, cfg.action_hidden, d)
        self.action_embedder_B_3D = ActionMlp(cfg.action_embed_in, cfg.action_hidden, 3 * d)
        # 4. Text context projection
        self.crossattn_proj = nn.Sequential(
            nn.Linear(cfg.crossattn_proj_in_channels, cfg.crossattn_emb_channels, bias=True), nn.GELU()
        )
        # 5. Blocks
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_blocks)])
        # 6. Final layer
        self.final_layer = FinalLayer(cfg)

    # ----------------------------------------------------------------- preparation

    def to_inference_dtype(self, dtype: torch.dtype) -> DreamDojoDiT:
        """Cast to `dtype`, keeping the float32 modules of the training recipe in float32."""
        self.to(dtype)
        if dtype != torch.float32 and self.cfg.fp32_modulation:
            for name, module in self.named_modules():
                parts = name.split(".")
                if any(part.startswith(keep) for part in parts for keep in self._keep_in_fp32_modules):
                    module.float()
        return self

    def fuse_qkv(self) -> None:
        """Fuse every self-attention's q/k/v projection into one GEMM (see Attention.fuse_qkv)."""
        for block in self.blocks:
            block.self_attn.fuse_qkv()

    @torch.no_grad()
    def project_context(self, text_embedding: torch.Tensor | None, batch: int = 1) -> torch.Tensor:
        """Stage 4: raw text embedding (B, N, 100352) → context (B, N, 1024).

        ``None`` means the all-zero embedding (text dropout, the documented fallback):
        Linear(0) + bias → GELU(bias), computed without allocating the 100352-wide zeros.
        """
        lin = self.crossattn_proj[0]
        if text_embedding is None:
            row = F.gelu(lin.bias.float())
            return row.expand(batch, self.cfg.text_tokens, -1).to(lin.weight.dtype).contiguous()
        return self.crossattn_proj(text_embedding.to(device=lin.weight.device, dtype=lin.weight.dtype))

    @torch.no_grad()
    def cross_attention_kv(self, context: torch.Tensor) -> CrossKV:
        """Per-block cross-attention (k, v) of a projected context (B, N, 1024); compute once."""
        return [block.cross_attn.context_kv(context) for block in self.blocks]

    def rope(self, t: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (t, h, w, str(device))
        if key not in self._rope_cache:
            self._rope_cache[key] = rope_3d(self.cfg, t, h, w, device)
        return self._rope_cache[key]

    # ----------------------------------------------------------------- forward

    def embed_time_and_actions(
        self, timesteps: torch.Tensor, actions: torch.Tensor, num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 3: (B,) timesteps and (B, A, action_dim) actions → emb (B, T, D), adaln_lora (B, T, 3D), float32."""
        cfg = self.cfg
        b = timesteps.shape[0]
        k = cfg.actions_per_latent_frame
        if (
            actions.shape[0] != b
            or actions.shape[-1] != cfg.action_dim
            or actions.shape[1] != k * (num_frames - 1)
        ):
            raise ValueError(
                f"actions must be (B={b}, {k * (num_frames - 1)}, {cfg.action_dim}) for {num_frames} latent frames, "
                f"got {tuple(actions.shape)}"
            )
        sinusoid = self.t_embedder[0](timesteps.float()[:, None] * cfg.timestep_scale)  # [B, 1, D]
        adaln_lora = self.t_embedder[1](sinusoid).float()  # [B, 1, 3D]
        # [B, A, a] -> [B, T-1, k*a]: one row of k consecutive actions per new latent frame
        grouped = actions.reshape(b, num_frames - 1, k * cfg.action_dim)
        grouped = grouped.to(self.action_embedder_B_D.fc1.weight.dtype)
        act_d = self.action_embedder_B_D(grouped).float()
        act_3d = self.action_embedder_B_3D(grouped).float()
        # The conditioning latent frame gets no action: a zero row in front.
        act_d = torch.cat([act_d.new_zeros(b, 1, act_d.shape[-1]), act_d], dim=1)  # [B, T, D]
        act_3d = torch.cat([act_3d.new_zeros(b, 1, act_3d.shape[-1]), act_3d], dim=1)  # [B, T, 3D]
        emb = self.t_embedding_norm(sinusoid + act_d)
        return emb.float(), adaln_lora + act_3d

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        actions: torch.Tensor,
        condition_mask: torch.Tensor,
        cross_kv: CrossKV,
        *,
        step_cache: StepCache | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        b, c, t, h, w = x.shape
        if c != cfg.latent_channels:
            raise ValueError(f"expected {cfg.latent_channels} latent channels, got {c}")
        dtype = self.x_embedder.proj[1].weight.dtype

        # 1. Patch embedding: [B, 16+1+1, T, H, W] -> [B, T', H', W', D]
        parts = [x.to(dtype)]
        if cfg.condition_mask_channel:
            parts.append(condition_mask.to(dtype))
        if cfg.concat_padding_mask:
            parts.append(x.new_zeros((b, 1, t, h, w), dtype=dtype))  # no padding in our frames
        tokens = self.x_embedder(torch.cat(parts, dim=1))
        tp, hp, wp = tokens.shape[1:4]
        tokens = tokens.reshape(b, tp, hp * wp, -1)  # [B, T', H', W', D] -> [B, T', S, D]

        # 2. RoPE-3D
        rope = self.rope(tp, hp, wp, tokens.device)

        # 3. Timestep + action embedding (float32)
        emb, adaln_lora = self.embed_time_and_actions(timesteps, actions, tp)

        # 5. Blocks (optionally skipped per sample by the step cache)
        if step_cache is None:
            out = self._run_blocks(tokens, emb, adaln_lora, rope, cross_kv)
        else:
            indicator = self.blocks[0].self_attn_input(tokens, emb, adaln_lora)
            compute = step_cache.decide(indicator)
            if bool(compute.all()):
                out = self._run_blocks(tokens, emb, adaln_lora, rope, cross_kv)
                step_cache.store(out - tokens, compute)
            else:
                out = torch.empty_like(tokens)
                skip = ~compute
                out[skip] = step_cache.reuse(tokens, skip)
                if bool(compute.any()):
                    sub_kv = [
                        (k[compute] if k.shape[0] == b else k, v[compute] if v.shape[0] == b else v)
                        for k, v in cross_kv
                    ]
                    computed = self._run_blocks(
                        tokens[compute], emb[compute], adaln_lora[compute], rope, sub_kv
                    )
                    out[compute] = computed
                    step_cache.store(computed - tokens[compute], compute)

        # 6. Final layer and unpatchify: [B, T', S, ps*ps*pt*C] -> [B, C, T, H, W]
        y = self.final_layer(out, emb, adaln_lora)
        ps, pt = cfg.patch_spatial, cfg.patch_temporal
        y = y.reshape(b, tp, hp, wp, ps, ps, pt, c)  # (p1 p2 t C) inside a patch
        y = y.permute(0, 7, 1, 6, 2, 4, 3, 5)  # [B, C, T', pt, H', p1, W', p2]
        return y.reshape(b, c, tp * pt, hp * ps, wp * ps)

    def _run_blocks(
        self,
        x: torch.Tensor,
        emb: torch.Tensor,
        adaln_lora: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cross_kv: CrossKV,
    ) -> torch.Tensor:
        if len(cross_kv) != len(self.blocks):
            raise ValueError(f"cross_kv has {len(cross_kv)} entries for {len(self.blocks)} blocks")
        for block, kv in zip(self.blocks, cross_kv, strict=True):
            x = block(x, emb, adaln_lora, rope, kv)
        return x


@torch.no_grad()
def init_random_weights(
    model: nn.Module, seed: int = 0, *, gain: float = 1.0, on_device: bool = False
) -> None:
    """Deterministic random weights with sane activation scales (tests, benchmarks).

    Linear weights ~ N(0, gain²/fan_in), biases ~ N(0, 0.02²), norm gains 1. By default
    drawn on a CPU generator per tensor (then copied), so the values do not depend on the
    device; ``on_device=True`` draws on each parameter's device instead (fast for 2B on a
    GPU, values then depend on the device).
    """
    gens: dict[str, torch.Generator] = {}
    for name, p in model.named_parameters():
        dev = p.device if on_device else torch.device("cpu")
        key = str(dev)
        if key not in gens:
            gens[key] = torch.Generator(device=dev).manual_seed(seed)
        gen = gens[key]
        if p.ndim >= 2:
            std = gain / math.sqrt(p.shape[1])
            p.copy_(torch.randn(p.shape, generator=gen, device=dev, dtype=torch.float32).mul_(std))
        elif name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=gen, device=dev, dtype=torch.float32).mul_(0.02))
        else:
            p.fill_(1.0)
