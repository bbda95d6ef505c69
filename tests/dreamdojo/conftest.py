"""Fixtures for the DreamDojo tests: a tiny random config with the real ``net.*`` key layout.

Nothing here downloads anything: weights are created at random in temporary folders,
the environment is stripped of ``DREAM_*`` / Hub settings and the Hub is forced offline.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from dream.engine.models.dreamdojo.config import DREAMDOJO_TINY
from dream.engine.specs import EngineSpec

if TYPE_CHECKING:
    import torch

# The DreamDojo runner needs the [torch] extra; without it these tests are not collected.
MISSING = [name for name in ("torch", "diffusers", "safetensors") if importlib.util.find_spec(name) is None]
if MISSING:
    collect_ignore_glob = ["test_*.py"]

TINY_SLUG = "dreamdojo-tiny-test"
TINY_RES = (32, 32)


def make_tiny_spec() -> EngineSpec:
    return EngineSpec(
        slug=TINY_SLUG,
        name="DreamDojo tiny (tests)",
        runner="dreamdojo",
        action_dim=384,
        chunk_size=12,
        canonical_T=48,
        resolution=TINY_RES,
        fps=10,
        default_num_steps=3,
        default_guidance=0.0,
        price_per_frame_usd=0.0,
        uses_num_steps=True,
        uses_guidance=True,
        uses_seed=True,
    )


@pytest.fixture(scope="session", autouse=True)
def _gentle_cpu() -> Iterator[None]:
    """Another job shares these cores: one thread is plenty for the tiny config."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No DREAM_* settings, an empty weights root, an empty offline Hub cache."""
    import os

    try:
        # Import before the environment changes: huggingface_hub reads HF_HUB_OFFLINE and
        # HF_HUB_CACHE once, at import, and monkeypatch must restore the real values.
        import huggingface_hub.constants as hf_constants
    except ImportError:
        hf_constants = None
    for name in list(os.environ):
        if name.startswith("DREAM_") or name in (
            "HF_TOKEN",
            "HF_HOME",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DREAM_WEIGHTS_DIR", str(tmp_path_factory.mktemp("weights-root")))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if hf_constants is not None:
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", os.environ["HF_HUB_CACHE"], raising=False)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="session")
def tiny_spec() -> EngineSpec:
    """The tiny spec object. Not put in the global registry, so other suites' catalogs are
    unaffected; an engine-level test can add it with ``specs.register(make_tiny_spec())``."""
    return make_tiny_spec()


def tiny_dit(seed: int = 0):
    from dream.engine.models.dreamdojo.dit import DreamDojoDiT, init_random_weights

    model = DreamDojoDiT(DREAMDOJO_TINY.dit)
    init_random_weights(model, seed)
    return model.eval()


def net_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights in NVIDIA's layout (``net.`` prefix)."""
    return {"net." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    return net_state(tiny_dit(0))


def write_vae(folder: Path) -> Path:
    import torch

    from dream.engine.models.dreamdojo.vae import WanVAE

    vae = WanVAE.from_config(DREAMDOJO_TINY.vae, device="cpu", dtype=torch.float32, seed=0)
    vae.save_pretrained(folder / "vae")
    return folder / "vae"


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory, tiny_state: dict[str, torch.Tensor]) -> Path:
    """A complete tiny weights folder: model.safetensors + vae/."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-weights")
    save_file(tiny_state, str(folder / "model.safetensors"))
    write_vae(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_runner(tiny_spec: EngineSpec, tiny_weights_dir: Path):
    from dream.engine.models.dreamdojo.runner import DreamDojoOptions, DreamDojoRunner

    runner = DreamDojoRunner(tiny_spec, weights=tiny_weights_dir, options=DreamDojoOptions())
    runner.load()
    return runner


@pytest.fixture(scope="session")
def start_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (1, *TINY_RES, 3), dtype=np.uint8)


def random_actions(k: int, t: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (k, t, 384)).astype(np.float32)


@pytest.fixture(scope="session")
def make_actions():
    """Factory: (k, t, seed=1) -> float32 (k, t, 384) actions in [-1, 1]."""
    return random_actions


@pytest.fixture(scope="session")
def make_tiny_dit():
    """Factory: (seed=0) -> a random tiny DiT with the real key layout."""
    return tiny_dit


@pytest.fixture(scope="session")
def to_net_state():
    """Function: model -> its state dict with NVIDIA's ``net.`` prefix."""
    return net_state


@pytest.fixture(scope="session")
def make_vae_folder():
    """Function: folder -> writes a tiny diffusers VAE into folder/vae and returns it."""
    return write_vae
