"""The ``dreamdojo`` runner family: NVIDIA DreamDojo (Cosmos-Predict2.5 DiT + Wan2.1 VAE).

Where weights are looked for (first hit wins; ``weights_status`` and ``load`` agree):

1. the ``weights=`` argument of the runner (the CLI's ``--weights PATH``);
2. ``$DREAM_WEIGHTS_<SLUG>`` (slug upper-cased, non-alphanumerics → ``_``; for the flagship
   ``DREAM_WEIGHTS_DREAMDOJO_2B_GR1``): a weights folder or a DiT checkpoint file/folder;
3. ``$DREAM_WEIGHTS_DIR/<slug>/`` (default root ``~/.cache/dream/weights``, where
   ``dream pull`` puts them), or a checkpoint directly in ``$DREAM_WEIGHTS_DIR``;
4. the huggingface_hub cache (``nvidia/DreamDojo`` + ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``),
   without network access.

A weights folder holds the DiT checkpoint (``model.safetensors`` from ``dream convert``,
``model_ema_bf16.pt``, or the DCP folder ``<hub folder>/iter_*/model/``), the Wan2.1 VAE
in diffusers format under ``vae/``, and optionally ``empty_prompt_embedding.safetensors``
and ``negative_prompt_embedding.safetensors``. When the DiT is given as a file or DCP folder, ``vae/`` and the
optional files are looked for next to it and up to four folders above.

Runtime options (:class:`DreamDojoOptions`, also read from ``DREAM_DREAMDOJO_*`` env vars):
torch.compile of the block stack, CUDA graphs, step caching, VAE dtype and batch, and
whether pickled ``.pt`` files may be loaded. Actions go to the network unchanged (model
input); :func:`dream.actions.gr1_actions` builds them from raw GR-1 data.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dream.engine.models.dreamdojo.config import DreamDojoConfig, config_for
from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec
from dream.errors import EngineError, InputValidationError, WeightsNotFoundError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dream.engine.models.dreamdojo.loader import CheckpointRef, LoadReport
    from dream.engine.models.dreamdojo.pipeline import DreamDojoPipeline

__all__ = ["DreamDojoOptions", "DreamDojoRunner", "ResolvedWeights", "resolve_weights", "spec_weights_env"]

logger = logging.getLogger(__name__)

_DTYPE_NAMES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}


def spec_weights_env(slug: str) -> str:
    """The per-spec weights env var: ``DREAM_WEIGHTS_`` + slug upper-cased with ``_`` separators."""
    return "DREAM_WEIGHTS_" + re.sub(r"[^A-Z0-9]+", "_", slug.upper()).strip("_")


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class DreamDojoOptions:
    """Runtime knobs of a DreamDojo runner (defaults: correct and portable; speed levers opt-in).

    compile:        torch.compile the block stack (GPU; first rollout pays the compile).
    cuda_graphs:    with compile, use mode "reduce-overhead" (CUDA graphs); off by default
                    because graphs are recorded per batch shape and hold their memory.
    fuse_qkv:       one GEMM for self-attention q/k/v (keeps the checkpoint key layout).
    step_cache_threshold: TeaCache-style step caching; 0 = off (see PipelineOptions).
    vae_dtype:      VAE precision; None → float32 (diffusers' recommendation for Wan).
    vae_batch_size: decode at most this many rollouts at once (None: all).
    allow_pickle:   allow non-weights-only ``.pt`` files (trusted files only).
    """

    compile: bool = False
    cuda_graphs: bool = False
    fuse_qkv: bool = True
    step_cache_threshold: float = 0.0
    step_cache_warmup_steps: int = 3
    vae_dtype: str | None = None
    vae_batch_size: int | None = None
    allow_pickle: bool = False

    @classmethod
    def from_env(cls) -> DreamDojoOptions:
        """Options from ``DREAM_DREAMDOJO_COMPILE``, ``..._CUDA_GRAPHS``, ``..._FUSE_QKV``,
        ``..._STEP_CACHE`` (threshold), ``..._VAE_DTYPE``, ``..._VAE_BATCH`` and
        ``DREAM_TRUST_PICKLE``."""
        cache = os.environ.get("DREAM_DREAMDOJO_STEP_CACHE", "")
        vae_batch = os.environ.get("DREAM_DREAMDOJO_VAE_BATCH", "")
        mode = os.environ.get("DREAM_DREAMDOJO_ACTION_MODE", "")
        if mode and mode != "model":
            raise EngineError(
                f"DREAM_DREAMDOJO_ACTION_MODE={mode!r} is no longer supported: the engine takes model-input "
                "actions only; convert raw GR-1 data with dream.actions.gr1_actions(actions, state)"
            )
        try:
            threshold = float(cache) if cache else 0.0
            batch = int(vae_batch) if vae_batch else None
        except ValueError as exc:
            raise EngineError(f"bad DREAM_DREAMDOJO_* setting: {exc}") from exc
        return cls(
            compile=_env_flag("DREAM_DREAMDOJO_COMPILE"),
            cuda_graphs=_env_flag("DREAM_DREAMDOJO_CUDA_GRAPHS"),
            fuse_qkv=_env_flag("DREAM_DREAMDOJO_FUSE_QKV", True),
            step_cache_threshold=threshold,
            vae_dtype=os.environ.get("DREAM_DREAMDOJO_VAE_DTYPE") or None,
            vae_batch_size=batch,
            allow_pickle=_env_flag("DREAM_TRUST_PICKLE"),
        )


@dataclass(frozen=True)
class ResolvedWeights:
    """The files a load will read, found without reading them."""

    dit: CheckpointRef
    vae_folder: Path
    folder: Path  # where the optional files (prompt embeddings) are looked for
    source: str  # how they were found, for logs and WeightsStatus.location


def _missing_message(spec: EngineSpec, config: DreamDojoConfig, looked: list[str], reason: str = "") -> str:
    from dream.engine.models.dreamdojo.hub import default_weights_root, download_plan

    slug = spec.slug
    folder = default_weights_root() / slug
    plan = download_plan(config)
    parts = [f"{spec.name} ({slug}) weights are not present."]
    if reason:
        parts.append(reason + ".")
    if plan:
        what = "; ".join(f"{p.what} from {p.describe()}" for p in plan)
        parts.append(f"Fetch them with `dream pull {slug}` (downloads {what}) into {folder}.")
    parts.append(
        ("Or place" if plan else "Place")
        + f" them yourself in {folder} (set DREAM_WEIGHTS_DIR to change the root, or "
        f"{spec_weights_env(slug)} / --weights to point at a folder or checkpoint): a DiT checkpoint "
        "(model.safetensors from `dream convert`, model_ema_bf16.pt, or the DCP folder iter_*/model/) and the "
        "Wan2.1 VAE in diffusers format in vae/ (config.json + diffusion_pytorch_model.safetensors); optional "
        "empty_prompt_embedding.safetensors and negative_prompt_embedding.safetensors."
    )
    if looked:
        parts.append("Looked in: " + "; ".join(looked) + ".")
    return " ".join(parts)


def _find_vae_near(path: Path) -> Path | None:
    from dream.engine.models.dreamdojo.loader import find_vae_folder

    start = path if path.is_dir() else path.parent
    for candidate in [start, *list(start.parents)[:4]]:
        found = find_vae_folder(candidate)
        if found is not None:
            return found
    return None


def _folder_near(path: Path) -> Path:
    """The weights folder a checkpoint belongs to: the folder holding vae/, else its own folder."""
    vae = _find_vae_near(path)
    if vae is not None:
        return vae.parent if vae.name == "vae" else vae
    return path if path.is_dir() else path.parent


def _resolve_at(
    path: Path, spec: EngineSpec, config: DreamDojoConfig, source: str, looked: list[str]
) -> ResolvedWeights:
    from dream.engine.models.dreamdojo.loader import find_dit_checkpoint

    looked.append(f"{source}: {path}")
    try:
        dit = find_dit_checkpoint(path)
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(_missing_message(spec, config, looked, str(exc))) from exc
    vae = _find_vae_near(dit.path)
    if vae is None:
        raise WeightsNotFoundError(
            _missing_message(
                spec,
                config,
                looked,
                f"found the DiT checkpoint {dit} but no Wan2.1 VAE folder (vae/) next to it",
            )
        )
    return ResolvedWeights(dit=dit, vae_folder=vae, folder=_folder_near(dit.path), source=source)


def resolve_weights(spec: EngineSpec, explicit: Path | str | None = None) -> ResolvedWeights:
    """Find the weights of `spec` (see the module docstring for the order); read nothing.

    Raises WeightsNotFoundError whose message says exactly what to fetch and where to put it.
    """
    from dream.engine.models.dreamdojo.hub import ENV_WEIGHTS_DIR, default_weights_root, find_in_hub_cache
    from dream.engine.models.dreamdojo.loader import _classify

    config = config_for(spec.slug)
    looked: list[str] = []
    if explicit is not None:
        return _resolve_at(Path(explicit).expanduser(), spec, config, "--weights", looked)
    env_name = spec_weights_env(spec.slug)
    if os.environ.get(env_name):
        return _resolve_at(Path(os.environ[env_name]).expanduser(), spec, config, env_name, looked)

    root = default_weights_root()
    root_label = ENV_WEIGHTS_DIR if os.environ.get(ENV_WEIGHTS_DIR) else "default weights root"
    if (root / spec.slug).exists():
        return _resolve_at(root / spec.slug, spec, config, f"{root_label}/{spec.slug}", looked)
    looked.append(f"{root_label}/{spec.slug}: {root / spec.slug} (absent)")
    if root.is_dir() and (
        _classify(root) is not None or any(p.is_file() and _classify(p) for p in root.iterdir())
    ):
        return _resolve_at(root, spec, config, root_label, looked)

    cached = find_in_hub_cache(config)
    if cached is not None:
        dit_root, vae_folder = cached
        from dream.engine.models.dreamdojo.loader import find_dit_checkpoint

        return ResolvedWeights(
            dit=find_dit_checkpoint(dit_root), vae_folder=vae_folder, folder=dit_root, source="hf-cache"
        )
    if config.hub_repo:
        looked.append(f"huggingface_hub cache: {config.hub_repo} / {config.vae_hub_repo} (not cached)")
    raise WeightsNotFoundError(_missing_message(spec, config, looked))


def _torch_dtype(name: str | None, device: torch.device) -> torch.dtype:
    import torch

    if name is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return getattr(torch, _DTYPE_NAMES[name.lower()])
    except KeyError:
        raise EngineError(
            f"unknown dtype {name!r}; expected one of {', '.join(sorted(_DTYPE_NAMES))}"
        ) from None


@dataclass
class _Loaded:
    pipeline: DreamDojoPipeline
    report: LoadReport | None = None
    resolved: ResolvedWeights | None = None
    notes: list[str] = field(default_factory=list)


class DreamDojoRunner(Runner):
    """DreamDojo rollouts: chunked autoregressive video prediction from a start frame and actions.

    Lifecycle as every runner: ``weights_status`` (cheap) → ``__init__`` → ``load`` →
    ``warmup`` → ``rollout``. ``load`` reads the DiT (strictly, see ``loader``), the VAE,
    the empty- and negative-prompt embeddings (zeros fallback), moves them to the
    device (bf16 DiT on CUDA, float32 on CPU unless ``dtype`` says otherwise) and applies
    the speed options.
    """

    def __init__(
        self,
        spec: EngineSpec,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        weights: str | Path | None = None,
        options: DreamDojoOptions | None = None,
    ) -> None:
        super().__init__(spec, device=device, dtype=dtype)
        self.config = config_for(spec.slug)
        self.weights = weights
        self.options = options if options is not None else DreamDojoOptions.from_env()
        self._loaded: _Loaded | None = None

    # ------------------------------------------------------------------ Runner interface

    @classmethod
    def weights_status(cls, spec: EngineSpec, weights: str | Path | None = None) -> WeightsStatus:
        try:
            resolved = resolve_weights(spec, weights)
        except WeightsNotFoundError as exc:
            return WeightsStatus(available=False, message=str(exc))
        return WeightsStatus(available=True, location=str(resolved.dit.path))

    def load(self) -> None:
        import torch

        from dream.engine.models.dreamdojo.dit import DreamDojoDiT
        from dream.engine.models.dreamdojo.loader import expected_shapes, load_dit_state_dict
        from dream.engine.models.dreamdojo.text_embedding import (
            load_empty_prompt_embedding,
            load_negative_prompt_embedding,
        )
        from dream.engine.models.dreamdojo.vae import WanVAE

        resolved = resolve_weights(self.spec, self.weights)
        device = torch.device(self.device)
        dtype = _torch_dtype(self.dtype, device)
        with torch.device("meta"):
            dit = DreamDojoDiT(self.config.dit)
        state, report = load_dit_state_dict(
            resolved.dit, expected_shapes(dit), allow_pickle=self.options.allow_pickle
        )
        dit.load_state_dict(state, strict=True, assign=True)
        del state
        vae = WanVAE.from_pretrained(
            resolved.vae_folder, device=device, dtype=_torch_dtype(self.options.vae_dtype or "fp32", device)
        )
        channels = self.config.dit.crossattn_proj_in_channels
        text = load_empty_prompt_embedding(resolved.folder, channels)
        negative = load_negative_prompt_embedding(resolved.folder, channels)
        self._loaded = _Loaded(
            pipeline=self._assemble(dit, vae, device, dtype, text, negative), report=report, resolved=resolved
        )
        logger.info(
            "loaded %s from %s (%s) on %s/%s", self.spec.slug, resolved.dit, resolved.source, device, dtype
        )

    def warmup(self) -> None:
        """A 2-step rollout (compiles kernels and graphs) instead of a full 35-step one."""
        import numpy as np

        h, w = self.spec.resolution
        frame = np.zeros((1, h, w, 3), np.uint8)
        actions = np.zeros((1, self.spec.chunk_size, self.spec.action_dim), np.float32)
        self.rollout(frame, actions, seeds=[0], num_steps=2, guidance=0.0)

    def rollout(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
    ) -> np.ndarray:
        frames, actions, steps, g = self._checked(frames, actions, num_steps, guidance)
        return self.pipeline.rollout(frames, actions, seeds=[int(s) for s in seeds], num_steps=steps, guidance=g)

    def rollout_chunks(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
        chunk_actions: int,
    ) -> Iterator[np.ndarray]:
        """`rollout` a piece at a time (frame 0, then `chunk_actions` frames per piece): each
        ``next`` runs only the model chunks it returns, so a long rollout holds one piece of
        frames, not T + 1 (`DreamDojoPipeline.rollout_chunks`). Same bytes as `rollout`."""
        frames, actions, steps, g = self._checked(frames, actions, num_steps, guidance)
        return self.pipeline.rollout_chunks(
            frames, actions, seeds=[int(s) for s in seeds], num_steps=steps, guidance=g, chunk_actions=chunk_actions
        )

    def _checked(
        self, frames: np.ndarray, actions: np.ndarray, num_steps: int | None, guidance: float | None
    ) -> tuple[np.ndarray, np.ndarray, int, float]:
        """The inputs as arrays, and the sampling parameters with the spec's defaults filled in."""
        import numpy as np

        if self._loaded is None:
            raise EngineError(f"runner for {self.spec.slug!r} is not loaded; call load() first")
        frames = np.asarray(frames)
        actions = np.asarray(actions, dtype=np.float32)
        h, w = self.spec.resolution
        if frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise InputValidationError(
                f"frames must be (1 or K, {h}, {w}, 3) for {self.spec.slug}, got {frames.shape}"
            )
        steps = int(num_steps) if num_steps is not None else int(self.spec.default_num_steps)
        g = float(guidance) if guidance is not None else float(self.spec.default_guidance)
        return frames, actions, steps, g

    # ------------------------------------------------------------------ extras

    @property
    def pipeline(self) -> DreamDojoPipeline:
        if self._loaded is None:
            raise EngineError(f"runner for {self.spec.slug!r} is not loaded")
        return self._loaded.pipeline

    @property
    def load_report(self) -> LoadReport | None:
        return self._loaded.report if self._loaded else None

    def set_step_cache(self, threshold: float) -> None:
        """Turn step caching on (threshold > 0) or off (0) for the following rollouts."""
        self.options = replace(self.options, step_cache_threshold=float(threshold))
        if self._loaded is not None:
            self._loaded.pipeline.options.step_cache_threshold = float(threshold)

    @classmethod
    def from_modules(
        cls,
        spec: EngineSpec,
        dit: torch.nn.Module,
        vae: object,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        text_embedding: torch.Tensor | None = None,
        negative_text_embedding: torch.Tensor | None = None,
        options: DreamDojoOptions | None = None,
    ) -> DreamDojoRunner:
        """A loaded runner around modules built in memory (benchmarks with random weights)."""
        import torch

        runner = cls(spec, device=device, dtype=dtype, options=options or DreamDojoOptions())
        dev = torch.device(device)
        runner._loaded = _Loaded(
            pipeline=runner._assemble(dit, vae, dev, _torch_dtype(dtype, dev), text_embedding, negative_text_embedding),
            notes=["built from in-memory modules"],
        )
        return runner

    def _assemble(self, dit, vae, device, dtype, text, negative=None) -> DreamDojoPipeline:  # type: ignore[no-untyped-def]
        import torch

        from dream.engine.models.dreamdojo.pipeline import DreamDojoPipeline, PipelineOptions

        opts = self.options
        dit = dit.to(device)
        dit.to_inference_dtype(dtype)
        dit.eval().requires_grad_(False)
        if opts.fuse_qkv:
            dit.fuse_qkv()
        if opts.compile:
            mode = "reduce-overhead" if opts.cuda_graphs else None
            dit._run_blocks = torch.compile(dit._run_blocks, mode=mode)
        pipe_opts = PipelineOptions(
            step_cache_threshold=opts.step_cache_threshold,
            step_cache_warmup_steps=opts.step_cache_warmup_steps,
            vae_batch_size=opts.vae_batch_size,
        )
        return DreamDojoPipeline(
            dit, vae, self.config, text_embedding=text, negative_text_embedding=negative, options=pipe_opts
        )
