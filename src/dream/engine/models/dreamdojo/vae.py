"""The Wan2.1 video VAE DreamDojo works in: a thin wrapper over diffusers' ``AutoencoderKLWan``.

16 latent channels, 8× spatial and 4× causal temporal compression: 1 + 4k pixel frames
become 1 + k latent frames, and latent frame 0 depends on pixel frame 0 only, so a start
frame encoded alone gives exactly the conditioning latent of a chunk. Latents are
normalised per channel with the VAE's ``latents_mean`` / ``latents_std`` (as Cosmos does)
and the encoder's posterior mean is used (deterministic).

diffusers is imported lazily, when a VAE is built.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from dream.engine.models.dreamdojo.config import VAEConfig
from dream.engine.models.dreamdojo.loader import find_vae_folder
from dream.errors import EngineError, WeightsNotFoundError

__all__ = ["WanVAE", "find_vae_folder"]

logger = logging.getLogger(__name__)


def _autoencoder_class() -> Any:
    try:
        from diffusers import AutoencoderKLWan
    except ImportError as exc:
        raise EngineError(
            "the DreamDojo runner needs diffusers (AutoencoderKLWan): pip install 'dream-engine[torch]'"
        ) from exc
    return AutoencoderKLWan


class WanVAE:
    """Encode uint8 frames to normalised latents and decode latents back to uint8 frames."""

    def __init__(self, model: torch.nn.Module, *, device: torch.device | str, dtype: torch.dtype) -> None:
        model = model.to(device=device)
        if next(model.parameters()).dtype != dtype:
            model = model.to(dtype=dtype)
        self.model = model.eval().requires_grad_(False)
        self.device = torch.device(device)
        self.dtype = dtype
        cfg = model.config
        z = int(cfg.z_dim)
        self.latent_channels = z
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32, device=self.device).view(
            1, z, 1, 1, 1
        )
        self.std = torch.tensor(cfg.latents_std, dtype=torch.float32, device=self.device).view(1, z, 1, 1, 1)

    @classmethod
    def from_pretrained(cls, folder: Path | str, *, device: torch.device | str, dtype: torch.dtype) -> WanVAE:
        """Load a diffusers ``AutoencoderKLWan`` folder (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers/vae)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError(
                f"no Wan2.1 VAE at {str(folder)!r}: expected a diffusers folder with config.json and "
                "diffusion_pytorch_model.safetensors (Wan-AI/Wan2.1-T2V-1.3B-Diffusers, subfolder vae)"
            )
        try:
            model = _autoencoder_class().from_pretrained(
                str(folder), torch_dtype=torch.float32, low_cpu_mem_usage=False
            )
        except Exception as exc:
            raise EngineError(f"could not load the Wan2.1 VAE from {str(folder)!r}: {exc}") from exc
        return cls(model, device=device, dtype=dtype)

    @classmethod
    def from_config(
        cls, config: VAEConfig, *, device: torch.device | str, dtype: torch.dtype, seed: int = 0
    ) -> WanVAE:
        """A randomly initialised VAE of `config` (tests, benchmarks without weights)."""
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(seed)
            model = _autoencoder_class()(**config.diffusers_kwargs())
        return cls(model, device=device, dtype=dtype)

    def save_pretrained(self, folder: Path | str) -> None:
        self.model.save_pretrained(str(folder))

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, H, W, 3) → normalised latents (B, 16, 1, H/8, W/8), float32."""
        x = (
            frames.to(self.device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        )  # [B, 3, H, W] in [-1, 1]
        x = x[:, :, None].to(self.dtype)  # [B, 3, 1, H, W]
        mu = self.model.encode(x).latent_dist.mode().float()
        return (mu - self.mean) / self.std

    @torch.no_grad()
    def decode_to_uint8(
        self, latents: torch.Tensor, *, batch_size: int | None = None, truncate: bool = False
    ) -> torch.Tensor:
        """Normalised latents (B, 16, T, h, w) → uint8 frames (B, 1 + 4(T−1), 8h, 8w, 3) on the VAE's device.

        Pixel values are rounded; ``truncate=True`` truncates instead (NVIDIA's evaluation).
        """
        z = latents.float() * self.std + self.mean
        outs = []
        step = batch_size or z.shape[0]
        for i in range(0, z.shape[0], step):
            video = self.model.decode(z[i : i + step].to(self.dtype)).sample  # [b, 3, F, H, W] in ~[-1, 1]
            if truncate:  # NVIDIA's order of operations, so that truncation picks the same integers
                video = video.float().add_(1.0).div_(2.0).clamp_(0.0, 1.0).mul_(255.0).to(torch.uint8)
            else:
                video = video.float().clamp_(-1.0, 1.0).add_(1.0).mul_(127.5).round_().to(torch.uint8)
            outs.append(video.permute(0, 2, 3, 4, 1))  # [b, F, H, W, 3]
        return torch.cat(outs, dim=0)
