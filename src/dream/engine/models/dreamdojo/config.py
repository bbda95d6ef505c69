"""Configuration of the DreamDojo action-conditioned DiT, its VAE and its rollout.

Every dimension of the 2B GR-1 checkpoint is a default here (facts:
``/work/shared/dreamdojo-notes.md``); tiny test configs change numbers only, so the
state-dict key layout (``net.*``) is the same at every size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DiTConfig:
    """Cosmos-Predict2.5 "MiniTrainDIT" with DreamDojo's chunked action injection.

    The 2B defaults give ~2.1e9 parameters: 28 blocks of self-attention (RoPE-3D),
    cross-attention on a constant text embedding and a GELU MLP, each modulated by
    AdaLN-LoRA from the timestep + action embedding.
    """

    model_channels: int = 2048
    num_blocks: int = 28
    num_heads: int = 16  # head_dim = model_channels // num_heads = 128
    mlp_ratio: float = 4.0
    latent_channels: int = 16  # Wan2.1 VAE latent channels; also the output channels
    # Input = latent + 1 condition-mask channel + 1 padding-mask channel (18 for 2B).
    condition_mask_channel: bool = True
    concat_padding_mask: bool = True
    patch_spatial: int = 2
    patch_temporal: int = 1
    adaln_lora_dim: int = 256
    # Text context: Cosmos-Reason1-7B hidden states (all layers concatenated, 100352 wide)
    # projected to crossattn_emb_channels by `crossattn_proj` (Linear with bias + GELU).
    crossattn_proj_in_channels: int = 100352
    crossattn_emb_channels: int = 1024
    text_tokens: int = 512  # length of the (empty-prompt) text embedding
    # Actions: one latent frame covers `actions_per_latent_frame` actions of `action_dim`
    # each (temporal compression 4 → 4 × 384 = 1536 inputs to each action MLP).
    action_dim: int = 384
    actions_per_latent_frame: int = 4
    action_hidden_dim: int | None = None  # None → 4 × model_channels (8192 for 2B)
    # RoPE-3D: NTK extrapolation ratios (h/w trained at 720p, used at 480p → 3.0), no fps
    # modulation (positions are plain latent-frame indices), base 10000.
    rope_h_extrapolation_ratio: float = 3.0
    rope_w_extrapolation_ratio: float = 3.0
    rope_t_extrapolation_ratio: float = 1.0
    rope_theta: float = 10000.0
    # The network is called with int64(σ·1000) and multiplies by this before the
    # sinusoidal embedding (rectified-flow checkpoints were trained on σ ∈ [0, 1)).
    timestep_scale: float = 0.001
    norm_eps: float = 1e-6
    # Wan's fp32 strategy (the checkpoint was trained with it): timestep embedding, AdaLN
    # modulation, RoPE on q/k and the final layer run in float32 even under bf16.
    fp32_modulation: bool = True

    @property
    def head_dim(self) -> int:
        return self.model_channels // self.num_heads

    @property
    def in_channels(self) -> int:
        """Channels the patch embedder sees (18 for 2B)."""
        return self.latent_channels + int(self.condition_mask_channel) + int(self.concat_padding_mask)

    @property
    def patch_dim(self) -> int:
        """Width of one flattened input patch (72 for 2B)."""
        return self.in_channels * self.patch_temporal * self.patch_spatial**2

    @property
    def action_embed_in(self) -> int:
        """Input width of each action MLP (1536 for 2B)."""
        return self.action_dim * self.actions_per_latent_frame

    @property
    def action_hidden(self) -> int:
        return self.action_hidden_dim if self.action_hidden_dim is not None else 4 * self.model_channels

    def __post_init__(self) -> None:
        if self.model_channels % self.num_heads:
            raise ValueError(
                f"model_channels {self.model_channels} is not a multiple of num_heads {self.num_heads}"
            )
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim {self.head_dim} must be even and >= 6 for RoPE-3D")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VAEConfig:
    """diffusers ``AutoencoderKLWan`` arguments (Wan2.1: 16 latent channels, 8× space, 4× time).

    The defaults are Wan2.1's; the latent normalisation constants come from the VAE's own
    config when weights are loaded from a diffusers folder.
    """

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    spatial_compression: int = 8
    temporal_compression: int = 4

    def diffusers_kwargs(self) -> dict[str, Any]:
        return {
            "base_dim": self.base_dim,
            "z_dim": self.z_dim,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": list(self.attn_scales),
            "temperal_downsample": list(self.temperal_downsample),
        }


@dataclass(frozen=True)
class DreamDojoConfig:
    """Everything a DreamDojo runner needs besides weights: network, VAE and sampling."""

    dit: DiTConfig = field(default_factory=DiTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    chunk_size: int = 12  # actions per autoregressive chunk (13 pixel frames, 4 latent)
    flow_shift: float = 5.0
    sigma_max: float = 0.999
    # The HF repository and folder the released checkpoint lives in (used by `dream pull`
    # and by the Hub-cache lookup of weights_status); "" means none.
    hub_repo: str = "nvidia/DreamDojo"
    hub_folder: str = "2B_GR1_post-train"
    vae_hub_repo: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    vae_hub_folder: str = "vae"

    @property
    def latent_frames_per_chunk(self) -> int:
        """1 conditioning latent frame + chunk_size / temporal compression new ones (4)."""
        return 1 + self.chunk_size // self.vae.temporal_compression

    def __post_init__(self) -> None:
        if self.chunk_size % self.vae.temporal_compression:
            raise ValueError(
                f"chunk_size {self.chunk_size} must be a multiple of the VAE's temporal compression "
                f"{self.vae.temporal_compression}"
            )
        if self.dit.actions_per_latent_frame != self.vae.temporal_compression:
            raise ValueError(
                f"actions_per_latent_frame {self.dit.actions_per_latent_frame} must equal the VAE's temporal "
                f"compression {self.vae.temporal_compression}"
            )
        if self.dit.latent_channels != self.vae.z_dim:
            raise ValueError(f"DiT latent_channels {self.dit.latent_channels} != VAE z_dim {self.vae.z_dim}")


DREAMDOJO_2B = DreamDojoConfig()

# A config with the real key layout that runs on CPU in milliseconds: tests and the
# `dreamdojo-tiny-test` spec. Only numbers differ from the 2B config.
DREAMDOJO_TINY = DreamDojoConfig(
    dit=DiTConfig(
        model_channels=64,
        num_blocks=2,
        num_heads=2,
        adaln_lora_dim=16,
        crossattn_proj_in_channels=48,
        crossattn_emb_channels=32,
        text_tokens=8,
        action_hidden_dim=64,
        rope_h_extrapolation_ratio=1.0,
        rope_w_extrapolation_ratio=1.0,
    ),
    vae=VAEConfig(base_dim=8, dim_mult=(1, 1, 2, 2), num_res_blocks=1),
    hub_repo="",  # nothing to download: tests create the weights
    vae_hub_repo="",
)

# Runner configs by spec slug. A spec registered at runtime (specs.register) whose slug is
# not here can add its config with `register_config`.
_CONFIGS: dict[str, DreamDojoConfig] = {
    "dreamdojo-2b-gr1": DREAMDOJO_2B,
    "dreamdojo-tiny-test": DREAMDOJO_TINY,
}


def register_config(slug: str, config: DreamDojoConfig) -> None:
    """Make `config` the DreamDojo config of spec `slug` (e.g. a tiny test spec)."""
    _CONFIGS[slug] = config


def config_for(slug: str) -> DreamDojoConfig:
    """The DreamDojo config of a spec; unknown slugs get the 2B config."""
    return _CONFIGS.get(slug, DREAMDOJO_2B)
