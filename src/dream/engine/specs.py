"""Spec registry: what each servable model is, as plain data.

A spec says everything the SDK, the server and the engine need to know about a model
without loading it: its input contract (action_dim, chunk_size, resolution), its
defaults, its price, which runner family executes it and where its weights live.
This module imports neither torch nor numpy, so the catalog is cheap to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from dream import DEFAULT_SPEC as DEFAULT_SPEC


@dataclass(frozen=True)
class EngineSpec:
    """One servable model: contract, defaults, price and runner family."""

    slug: str
    name: str
    runner: str  # model family, a key of RUNNERS
    action_dim: int
    chunk_size: int  # T must be a multiple of this
    canonical_T: int  # actions per canonical rollout (frames = T + 1)
    resolution: tuple[int, int]  # (H, W), height first as on the wire
    fps: int
    default_num_steps: int  # 0: the spec has no sampler steps
    default_guidance: float
    price_per_frame_usd: float
    # Which sampling knobs change this spec's output. Passing a knob that does not
    # warns instead of silently doing nothing.
    uses_num_steps: bool = False
    uses_guidance: bool = False
    uses_seed: bool = False
    # Each action value's range, where the model's actions have one (pusht-96: the 512×512
    # workspace); None: unbounded. Actions outside it are clipped by runners that have it.
    action_low: float | None = None
    action_high: float | None = None
    # Catalog text (shown by GET /v1/models and `dream models`).
    provider: str = ""
    category: str = ""
    summary: str = ""
    description: str = ""
    intended_use: str = ""
    training_data: str = ""
    license: str = ""
    links: dict[str, str] = field(default_factory=dict)
    model_size: str = ""
    embodiment: str = ""
    output_kind: str = "video"
    encoder_name: str | None = None
    temporal_compression: int | None = None
    ckpt_repo: str | None = None
    base_model: str | None = None
    tokenizer: str | None = None
    is_flagship: bool = False
    # Where weights come from, shown when they are missing.
    weights_hint: str = ""

    @property
    def canonical_frames(self) -> int:
        return self.canonical_T + 1

    @property
    def price_per_canonical_rollout_usd(self) -> float:
        return self.canonical_frames * self.price_per_frame_usd

    def frames_for(self, num_actions: int) -> int:
        """Frames in the output video of a rollout of `num_actions` actions (start frame included)."""
        return num_actions + 1

    def cost_usd(self, num_actions: int, k: int = 1) -> float:
        """Charge for `k` rollouts of `num_actions` actions each."""
        return k * self.frames_for(num_actions) * self.price_per_frame_usd

    def to_model_entry(self, *, active: bool, status_message: str = "") -> dict:
        """The wire ModelEntry (wire-protocol §6.3) for this spec."""
        entry = {
            "object": "model",
            "slug": self.slug,
            "name": self.name,
            "provider": self.provider,
            "upstream_provider": None,
            "category": self.category,
            "summary": self.summary,
            "description": self.description,
            "intended_use": self.intended_use,
            "training_data": self.training_data,
            "license": self.license,
            "links": dict(self.links),
            "price_per_frame_usd": self.price_per_frame_usd,
            "is_flagship": self.is_flagship,
            "is_benchmarked": False,
            "active": active,
            "spec": {
                "model_size": self.model_size,
                "embodiment": self.embodiment,
                "action_dim": self.action_dim,
                "chunk_size": self.chunk_size,
                "resolution": [self.resolution[0], self.resolution[1]],
                "default_num_steps": self.default_num_steps,
                "default_guidance": self.default_guidance,
                "runner": self.runner,
                "output_kind": self.output_kind,
                "encoder_name": self.encoder_name,
                "temporal_compression": self.temporal_compression,
                "ckpt_repo": self.ckpt_repo,
                "base_model": self.base_model,
                "tokenizer": self.tokenizer,
                # Beyond the 0.5.0 schema (ignored by that client): fields our SDK reads.
                "fps": self.fps,
                "canonical_T": self.canonical_T,
                "uses_num_steps": self.uses_num_steps,
                "uses_guidance": self.uses_guidance,
                "uses_seed": self.uses_seed,
                "action_low": self.action_low,
                "action_high": self.action_high,
            },
            "benchmark": None,
        }
        if status_message:
            entry["status_message"] = status_message
        return entry


PUSHT_96 = EngineSpec(
    slug="pusht-96",
    name="Push-T 96 · built-in",
    runner="pusht",
    action_dim=2,
    chunk_size=1,
    canonical_T=48,
    resolution=(96, 96),
    fps=10,
    default_num_steps=0,
    default_guidance=0.0,
    price_per_frame_usd=0.0001,  # a self-hosting operator sets its own; 1 mil per frame
    action_low=0.0,
    action_high=512.0,
    provider="dream-engine",
    category="Simulation",
    summary="Small deterministic world model of the gym-pusht 2-D pushing task; runs on CPU.",
    description=(
        "Predicts the 96x96 RGB observations of gym-pusht (a disc agent pushing a T-shaped block) "
        "from a start observation and the simulator's own actions: the agent's target position in "
        "the 512x512 workspace, at 10 Hz. A structured model: it reads the agent and block poses off "
        "the start frame, moves the agent by the simulator's PD controller (the documented meaning of an "
        "action) and the block by a small network this project trained on simulator episodes, and "
        "redraws only what moved; deterministic (num_steps, guidance and seed do "
        "not change its output)."
    ),
    intended_use="Offline demos, tests and CPU-only pipelines; visual MPC on the Push-T task.",
    training_data="Episodes simulated by gym-pusht 0.1.8 with scripted block-seeking and random policies.",
    license="Apache-2.0",
    links={"simulator": "https://pypi.org/project/gym-pusht/"},
    model_size="small",
    embodiment="Push-T",
    weights_hint="shipped inside the package (dream/engine/models/pusht/weights)",
)

DREAMDOJO_2B_GR1 = EngineSpec(
    slug="dreamdojo-2b-gr1",
    name="DreamDojo 2B · GR-1",
    runner="dreamdojo",
    action_dim=384,
    chunk_size=12,
    canonical_T=48,
    resolution=(480, 640),
    fps=10,
    default_num_steps=35,
    default_guidance=0.0,
    price_per_frame_usd=0.0005,
    uses_num_steps=True,
    uses_guidance=True,
    uses_seed=True,
    provider="NVIDIA",
    category="Robotics",
    summary="NVIDIA DreamDojo 2B post-trained on GR-1: action-conditioned Cosmos-Predict2.5 DiT + Wan2.1 VAE.",
    description=(
        "Action-conditioned video world model for the Fourier GR-1 humanoid: 480x640, 10 fps, "
        "autoregressive chunks of 12 actions (384-dim, GR-1 slice in dims 0..28)."
    ),
    intended_use="Visual MPC, data augmentation and policy evaluation for GR-1 manipulation.",
    training_data="NVIDIA DreamDojo pre-training and GR-1 post-training data.",
    license="NVIDIA Open Model License",
    links={"weights": "https://huggingface.co/nvidia/DreamDojo", "paper": "https://arxiv.org/abs/2602.06949"},
    model_size="2B",
    embodiment="GR-1",
    encoder_name="wan2.1-vae",
    temporal_compression=4,
    ckpt_repo="nvidia/DreamDojo",
    base_model="Cosmos-Predict2.5-2B",
    tokenizer="Wan2.1 VAE",
    is_flagship=True,
    weights_hint="`dream pull dreamdojo-2b-gr1`, or set DREAM_WEIGHTS_DIR / --weights PATH",
)

_REGISTRY: dict[str, EngineSpec] = {s.slug: s for s in (PUSHT_96, DREAMDOJO_2B_GR1)}


def register(spec: EngineSpec) -> None:
    """Add or replace a spec (e.g. a tiny test config of a runner family)."""
    _REGISTRY[spec.slug] = spec


def get(slug: str) -> EngineSpec:
    """The spec for `slug`; KeyError names the known slugs."""
    try:
        return _REGISTRY[slug]
    except KeyError:
        raise KeyError(f"unknown spec {slug!r}; known specs: {', '.join(sorted(_REGISTRY))}") from None


def all_specs() -> Iterator[EngineSpec]:
    return iter(list(_REGISTRY.values()))
