"""Chunked autoregressive rollout of DreamDojo: frames + actions → video frames.

The glue between the DiT, the VAE and the sampler (diffusers' pipeline role): check
inputs → encode the start frame → for each chunk of 12 actions: draw noise, run the
rectified-flow sampler with conditioning-frame replacement, decode → the last decoded
frame (as uint8) conditions the next chunk.

One chunk, for K rollouts at once (all tensors batched over K):

1. Conditioning latent: the chunk's start frame through the VAE encoder → (K, 16, 1, h, w).
   For chunk 0 with a shared start frame (leading dim 1) it is encoded once and expanded.
2. Noise (K, 16, 4, h, w): rollout k draws from its own CPU ``torch.Generator`` seeded with
   ``seeds[k]`` (chunks draw one after another from it), then moves to the device, so a
   rollout's output depends neither on the device nor on what shares its batch.
3. Sampling: UniPC (order 2, bh2) over the shifted σ schedule. Before every network call
   latent frame 0 is overwritten with the conditioning latent (condition-mask channel = 1)
   and its velocity with ``ε − x0_cond``. Guidance g: ``v = v_c + g·(v_c − v_u)`` where the
   unconditional branch uses the negative-prompt embedding when the weights folder has one
   (as NVIDIA's sampler does), else the zero text embedding (Cosmos's text dropout; logged),
   and the same actions; both branches run as one batched forward. With g = 0, or when the
   two branches are identical, the unconditional pass is skipped.
4. Decode the 4 latent frames → 13 frames; frames 1..12 are the chunk's output.

NVIDIA's evaluation protocol, as options of :meth:`DreamDojoPipeline.rollout` (defaults are ours):

- ``noise="nvidia"``: chunk c's noise is ``numpy.random.RandomState(12·c)
  .standard_normal((1, 16, 4, h, w))`` (the chunk's start index as seed, the same for every
  rollout of a batch) instead of one seeded torch generator per rollout;
- ``assembly="nvidia"``: the video is chunk 0's 13 decoded frames, then frames 0..11 of
  every later chunk (its re-decoded conditioning frame kept, its last frame dropped), and
  decoded pixels are truncated to uint8, not rounded (also the frame that conditions the
  next chunk). Ours (``"aligned"``): the start frame, then frames 1..12 of every chunk, so
  frame i is the prediction for time step i.

Actions: the (K, T, 384) array is DreamDojo's model input (normalised and relative, as
the hosted API receives it) and goes to the network unchanged. Raw GR-1 robot data is
turned into that form by :func:`dream.actions.gr1_actions`, outside the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from dream.engine.models.dreamdojo.config import DreamDojoConfig
from dream.engine.models.dreamdojo.dit import CrossKV, DreamDojoDiT, StepCache
from dream.engine.models.dreamdojo.vae import WanVAE
from dream.engine.sampling import UniPCMultistep, flow_timestep, shifted_sigmas
from dream.errors import InputValidationError

__all__ = ["ASSEMBLIES", "NOISES", "DreamDojoPipeline", "PipelineOptions", "RolloutStats", "nvidia_noise"]

NOISES = ("torch", "nvidia")
ASSEMBLIES = ("aligned", "nvidia")


def nvidia_noise(chunk_start: int, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """NVIDIA's evaluation noise for the chunk starting at action `chunk_start`: (1, C, T, h, w) float32."""
    draw = np.random.RandomState(chunk_start).standard_normal((1, *shape))
    return torch.from_numpy(draw).float()

logger = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- pipeline


@dataclass
class PipelineOptions:
    """Speed/quality knobs of the rollout that are not part of the Runner interface."""

    # TeaCache-style step caching: 0 disables it. Typical values 0.05-0.3 (see the bench).
    step_cache_threshold: float = 0.0
    # Steps always computed at the start of each chunk when caching (and the last one).
    step_cache_warmup_steps: int = 3
    # Decode at most this many rollouts at once (None: all K) to bound VAE memory.
    vae_batch_size: int | None = None


@dataclass
class RolloutStats:
    """What the last rollout cost: network calls and step-cache hits, wall time per stage."""

    dit_calls: int = 0
    computed_sample_steps: int = 0
    skipped_sample_steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


class DreamDojoPipeline:
    """Runs rollouts with a loaded DiT and VAE on one device."""

    def __init__(
        self,
        dit: DreamDojoDiT,
        vae: WanVAE,
        config: DreamDojoConfig,
        *,
        text_embedding: torch.Tensor | None = None,
        negative_text_embedding: torch.Tensor | None = None,
        options: PipelineOptions | None = None,
    ) -> None:
        self.dit = dit
        self.vae = vae
        self.config = config
        self.options = options or PipelineOptions()
        self.device = next(dit.parameters()).device
        self.last_stats = RolloutStats()
        with torch.inference_mode():
            # Computed once: the projected text context and every block's cross-attention K/V.
            context = dit.project_context(text_embedding)
            uncond_context = dit.project_context(negative_text_embedding, batch=1)
            self.cross_kv: CrossKV = dit.cross_attention_kv(context)
            self._uncond_kv: CrossKV = dit.cross_attention_kv(uncond_context)
            self.uncond_is_cond = context.shape == uncond_context.shape and bool(
                torch.equal(context, uncond_context)
            )
        self.has_negative_embedding = negative_text_embedding is not None
        self._logged_zero_uncond = False

    # ------------------------------------------------------------------ public

    def rollout(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: list[int],
        num_steps: int,
        guidance: float,
        noise: str = "torch",
        assembly: str = "aligned",
    ) -> np.ndarray:
        """uint8 frames (1 or K, H, W, 3), float32 actions (K, T, A) → uint8 (K, T + 1, H, W, 3).

        `noise` and `assembly` select NVIDIA's evaluation protocol (module docstring).
        """
        self._check_inputs(frames, actions, seeds, num_steps)
        self._check_protocol(noise, assembly)
        k, t_total = actions.shape[:2]
        h, w = frames.shape[1:3]
        out = np.empty((k, t_total + 1, h, w, 3), dtype=np.uint8)
        pos = 0
        if assembly == "aligned":
            out[:, 0] = frames  # frame 0 of each rollout is its start frame (broadcast when shared)
            pos = 1
        for piece in self._model_chunks(frames, actions, seeds, num_steps, guidance, noise, assembly):
            out[:, pos : pos + piece.shape[1]] = piece
            pos += piece.shape[1]
        return out

    def rollout_chunks(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: list[int],
        num_steps: int,
        guidance: float,
        chunk_actions: int,
    ) -> Iterator[np.ndarray]:
        """`rollout` as it is computed: frame 0 alone, then uint8 (K, n, H, W, 3) pieces of
        `chunk_actions` frames (a multiple of the chunk size; the last may be shorter).

        Each ``next`` runs only the model chunks of the piece it returns, so memory holds
        one piece of frames and the conditioning frame, whatever T is; the pieces
        concatenate to `rollout`'s frames byte for byte. Inputs are checked here, before
        the first ``next``.
        """
        self._check_inputs(frames, actions, seeds, num_steps)
        k = actions.shape[0]
        per_piece = max(1, int(chunk_actions) // self.config.chunk_size) * self.config.chunk_size
        model_chunks = self._model_chunks(frames, actions, seeds, num_steps, guidance, "torch", "aligned")
        first = np.array(np.broadcast_to(frames[:, None], (k, 1, *frames.shape[1:])))

        def pieces() -> Iterator[np.ndarray]:
            yield first
            buffered: list[np.ndarray] = []
            for chunk in model_chunks:
                buffered.append(chunk)
                if sum(c.shape[1] for c in buffered) >= per_piece:
                    yield np.concatenate(buffered, axis=1)
                    buffered = []
            if buffered:
                yield np.concatenate(buffered, axis=1)

        return pieces()

    def _model_chunks(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        seeds: list[int],
        num_steps: int,
        guidance: float,
        noise: str,
        assembly: str,
    ) -> Iterator[np.ndarray]:
        """The video one model chunk at a time, in order: "aligned", frames 1 + 12c … 12 + 12c
        of chunk c; "nvidia", chunk 0's 13 decoded frames, then 12 per chunk. Each chunk
        runs under its own inference mode, so none leaks to the caller between chunks."""
        cfg = self.config
        k, t_total = actions.shape[:2]
        nvidia_frames = assembly == "nvidia"
        stats = RolloutStats()
        h, w = frames.shape[1:3]
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        lat_h, lat_w = h // cfg.vae.spatial_compression, w // cfg.vae.spatial_compression
        lat_t = cfg.latent_frames_per_chunk
        with torch.inference_mode():
            cond_pixels = torch.from_numpy(np.array(frames, dtype=np.uint8))  # a copy: callers may pass read-only views
            actions_t = torch.from_numpy(np.ascontiguousarray(actions, dtype=np.float32)).to(self.device)
        for c in range(t_total // cfg.chunk_size):
            with torch.inference_mode():
                t0 = time.perf_counter()
                cond_latent = self.vae.encode_frames(cond_pixels)  # [1 or K, 16, 1, h, w]
                if cond_latent.shape[0] != k:
                    cond_latent = cond_latent.expand(k, -1, -1, -1, -1)
                stats.add_time("encode", time.perf_counter() - t0)

                shape = (cfg.dit.latent_channels, lat_t, lat_h, lat_w)
                if noise == "nvidia":
                    eps = nvidia_noise(c * cfg.chunk_size, shape).expand(k, -1, -1, -1, -1).to(self.device)
                else:
                    eps = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(self.device)
                chunk_actions = actions_t[:, c * cfg.chunk_size : (c + 1) * cfg.chunk_size]
                t0 = time.perf_counter()
                latents = self.sample_chunk(cond_latent, chunk_actions, eps, num_steps, guidance, stats)
                self._sync()
                stats.add_time("denoise", time.perf_counter() - t0)

                t0 = time.perf_counter()
                video = self.vae.decode_to_uint8(
                    latents, batch_size=self.options.vae_batch_size, truncate=nvidia_frames
                )  # [K, 13, H, W, 3]
                if nvidia_frames and c == 0:
                    piece = video.cpu().numpy()
                elif nvidia_frames:
                    piece = video[:, :-1].cpu().numpy()
                else:
                    piece = video[:, 1:].cpu().numpy()
                cond_pixels = video[:, -1]  # the last decoded frame conditions the next chunk
                del video, latents, eps
                stats.add_time("decode", time.perf_counter() - t0)
            self.last_stats = stats
            yield piece

    def _check_protocol(self, noise: str, assembly: str) -> None:
        if noise not in NOISES or assembly not in ASSEMBLIES:
            raise InputValidationError(
                f"noise must be one of {NOISES} and assembly one of {ASSEMBLIES}; got {noise!r}, {assembly!r}"
            )

    def sample_chunk(
        self,
        cond_latent: torch.Tensor,
        actions: torch.Tensor,
        noise: torch.Tensor,
        num_steps: int,
        guidance: float,
        stats: RolloutStats | None = None,
    ) -> torch.Tensor:
        """Denoise one chunk: conditioning latent (K, 16, 1, h, w), actions (K, 12, A), noise (K, 16, 4, h, w).

        Returns the clean latents (K, 16, 4, h, w) float32 with frame 0 = the conditioning latent.
        """
        cfg = self.config
        k = noise.shape[0]
        noise = noise.float()
        is_cond = torch.zeros((1, 1, noise.shape[2], 1, 1), dtype=torch.bool, device=noise.device)
        is_cond[:, :, 0] = True
        x0_cond = torch.zeros_like(noise)
        x0_cond[:, :, :1] = cond_latent.float()
        cond_velocity = noise - x0_cond  # the exact velocity of the conditioning frame
        mask = is_cond.to(noise.dtype).expand(k, 1, -1, noise.shape[3], noise.shape[4])

        use_uncond = guidance != 0.0 and not self.uncond_is_cond
        if guidance != 0.0 and not self.has_negative_embedding and not self._logged_zero_uncond:
            logger.warning(
                "guidance %g: no negative-prompt embedding, so the unconditional branch uses the all-zero text "
                "embedding%s",
                guidance,
                " (identical to the conditional one: guidance has no effect)" if self.uncond_is_cond else "",
            )
            self._logged_zero_uncond = True
        if use_uncond:
            kv = [
                (
                    torch.cat([kc.expand(k, -1, -1, -1), ku.expand(k, -1, -1, -1)]),
                    torch.cat([vc.expand(k, -1, -1, -1), vu.expand(k, -1, -1, -1)]),
                )
                for (kc, vc), (ku, vu) in zip(self.cross_kv, self._uncond_kv, strict=True)
            ]
            net_actions, net_mask = torch.cat([actions, actions]), torch.cat([mask, mask])
        else:
            kv, net_actions, net_mask = self.cross_kv, actions, mask
        opts = self.options
        cache = StepCache(opts.step_cache_threshold) if opts.step_cache_threshold > 0 else None
        stats = stats if stats is not None else RolloutStats()
        solver = UniPCMultistep(shifted_sigmas(num_steps, cfg.flow_shift, cfg.sigma_max))

        x = noise.clone()
        for i in range(solver.num_steps):
            sigma = solver.sigmas[i]
            x_in = torch.where(is_cond, x0_cond, x)
            timestep = torch.full((k,), float(flow_timestep(sigma)), device=noise.device)
            if cache is not None:
                cache.force = i < opts.step_cache_warmup_steps or i == solver.num_steps - 1
            if use_uncond:
                v = self.dit(
                    torch.cat([x_in, x_in]),
                    torch.cat([timestep, timestep]),
                    net_actions,
                    net_mask,
                    kv,
                    step_cache=cache,
                ).float()
                v_cond, v_uncond = v.chunk(2)
                v = v_cond + guidance * (v_cond - v_uncond)
            else:
                v = self.dit(x_in, timestep, net_actions, net_mask, kv, step_cache=cache).float()
            stats.dit_calls += 1
            v = torch.where(is_cond, cond_velocity, v)
            x = solver.step(v, x)
        if cache is not None:
            stats.computed_sample_steps += cache.computed_steps
            stats.skipped_sample_steps += cache.skipped_steps
        # Frame 0 ends within (1 − σ_0)·|ε − x0| of the conditioning latent; make it exact.
        x[:, :, :1] = cond_latent.float()
        return x

    # ------------------------------------------------------------------ helpers

    def _check_inputs(
        self, frames: np.ndarray, actions: np.ndarray, seeds: list[int], num_steps: int
    ) -> None:
        cfg = self.config
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputValidationError(
                f"frames must be uint8 (1 or K, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        if actions.ndim != 3 or actions.shape[-1] != cfg.dit.action_dim:
            raise InputValidationError(f"actions must be (K, T, {cfg.dit.action_dim}), got {actions.shape}")
        k, t = actions.shape[:2]
        if frames.shape[0] not in (1, k):
            raise InputValidationError(
                f"frames has {frames.shape[0]} start frames for {k} rollouts; expected 1 or {k}"
            )
        if t < cfg.chunk_size or t % cfg.chunk_size:
            raise InputValidationError(
                f"T = {t} actions is not a positive multiple of the chunk size {cfg.chunk_size}"
            )
        if len(seeds) != k:
            raise InputValidationError(f"got {len(seeds)} seeds for {k} rollouts")
        if num_steps < 1:
            raise InputValidationError(f"num_steps must be >= 1, got {num_steps}")
        h, w = frames.shape[1:3]
        unit = cfg.vae.spatial_compression * cfg.dit.patch_spatial
        if h % unit or w % unit:
            raise InputValidationError(f"frame size {h}x{w} must be a multiple of {unit}")
        if not np.isfinite(actions).all():
            raise InputValidationError("actions contain NaN or infinite values")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
