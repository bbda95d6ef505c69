"""Fetching DreamDojo weights from the Hugging Face Hub (``dream pull``) and finding them in its cache.

What a spec needs, per :class:`~dream.engine.models.dreamdojo.config.DreamDojoConfig`:

- the DiT: ``nvidia/DreamDojo``, folder ``2B_GR1_post-train`` — ``latest_checkpoint.txt``
  and the DCP model shards ``iter_*/model/*`` (optimizer states are not downloaded);
- the VAE: ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``, folder ``vae`` (diffusers AutoencoderKLWan,
  the same weights as Cosmos-Predict2.5's ``tokenizer.pth``).

``pull`` downloads both into one weights folder, ``<dest>/<slug>/``, laid out as::

    <dest>/<slug>/2B_GR1_post-train/latest_checkpoint.txt
    <dest>/<slug>/2B_GR1_post-train/iter_XXXXXXXXX/model/{.metadata, *.distcp}
    <dest>/<slug>/vae/{config.json, diffusion_pytorch_model.safetensors}

which the runner finds through ``DREAM_WEIGHTS_DIR`` (default ``~/.cache/dream/weights``).
Without ``pull``, files already in the huggingface_hub cache (e.g. from ``hf download``)
are found too (:func:`find_in_hub_cache`, never touches the network).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dream.engine.models.dreamdojo.config import DreamDojoConfig, config_for
from dream.errors import EngineError, WeightsNotFoundError

__all__ = ["HubDownload", "default_weights_root", "download_plan", "find_in_hub_cache", "pull"]

logger = logging.getLogger(__name__)

ENV_WEIGHTS_DIR = "DREAM_WEIGHTS_DIR"


def default_weights_root() -> Path:
    """``$DREAM_WEIGHTS_DIR``, else ``~/.cache/dream/weights``."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dream" / "weights"


@dataclass(frozen=True)
class HubDownload:
    """One ``snapshot_download`` call: which repository and which files of it."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    what: str  # for messages: "DiT (DCP)" / "VAE"

    def describe(self) -> str:
        return f"{self.repo_id}: {', '.join(self.allow_patterns)}"


def download_plan(config: DreamDojoConfig) -> list[HubDownload]:
    """The downloads a spec needs (empty for configs without a Hub source)."""
    plan: list[HubDownload] = []
    if config.hub_repo:
        folder = config.hub_folder
        plan.append(
            HubDownload(
                config.hub_repo,
                (f"{folder}/latest_checkpoint.txt", f"{folder}/*/model/*"),
                "DiT (PyTorch DCP)",
            )
        )
    if config.vae_hub_repo:
        sub = config.vae_hub_folder
        plan.append(
            HubDownload(config.vae_hub_repo, (f"{sub}/config.json", f"{sub}/*.safetensors"), "Wan2.1 VAE")
        )
    return plan


def pull(
    slug: str,
    dest: Path | str | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> Path:
    """Download the weights of spec `slug` into ``<dest>/<slug>/`` and return that folder.

    `dest` defaults to :func:`default_weights_root`. `token` is a Hugging Face token (the
    NVIDIA repository may require accepting its license on the Hub first); `revision`
    pins the DiT repository's revision. Raises EngineError naming the repository on failure.
    """
    config = config_for(slug)
    plan = download_plan(config)
    if not plan:
        raise EngineError(f"spec {slug!r} has no Hub source to pull from")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError as exc:
        raise EngineError("`dream pull` needs huggingface_hub: pip install 'dream-engine[torch]'") from exc
    target = Path(dest).expanduser() if dest is not None else default_weights_root()
    target = target / slug
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        _download(plan, target, config, token=token, revision=revision)
    except BaseException:
        # A folder left behind by a failed pull would be taken for the weights and hide the
        # Hugging Face cache from the weight lookup: remove what this call created.
        if created:
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _download(plan: list[HubDownload], target: Path, config: DreamDojoConfig, *, token: str | None, revision: str | None) -> None:
    from huggingface_hub import snapshot_download

    for item in plan:
        logger.info("downloading %s (%s) into %s", item.what, item.describe(), target)
        try:
            snapshot_download(
                repo_id=item.repo_id,
                allow_patterns=list(item.allow_patterns),
                local_dir=str(target),
                token=token,
                revision=revision if item.repo_id == config.hub_repo else None,
            )
        except Exception as exc:
            raise EngineError(
                f"could not download {item.describe()} from the Hugging Face Hub: {exc}. "
                "If the repository is gated, accept its license on huggingface.co and pass a token (HF_TOKEN)."
            ) from exc


def find_in_hub_cache(config: DreamDojoConfig) -> tuple[Path, Path] | None:
    """(DiT location, VAE folder) from the local huggingface_hub cache, or None. Never downloads."""
    plan = download_plan(config)
    if len(plan) != 2:
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    found: list[Path] = []
    for item in plan:
        try:
            snapshot = snapshot_download(
                repo_id=item.repo_id, allow_patterns=list(item.allow_patterns), local_files_only=True
            )
        except Exception:  # LocalEntryNotFoundError and friends: not cached
            return None
        found.append(Path(snapshot))
    dit_root = found[0] / config.hub_folder
    vae_folder = found[1] / config.vae_hub_folder
    if not dit_root.is_dir() or not (vae_folder / "config.json").is_file():
        return None
    try:
        from dream.engine.models.dreamdojo.loader import find_dit_checkpoint

        find_dit_checkpoint(dit_root)
    except (WeightsNotFoundError, EngineError):
        return None
    return dit_root, vae_folder
