"""The constant text conditioning of DreamDojo: the empty-prompt embedding.

DreamDojo was trained with empty captions, so its text input is always the same tensor:
the Cosmos-Reason1-7B hidden states of the empty prompt, (1, 512, 100352) (all 28 layers
× 3584 concatenated). The 7B encoder is not needed at inference: the embedding is read
once from a cached file in the weights folder, projected once by the DiT's
``crossattn_proj`` (→ (1, 512, 1024)) and turned once into per-block cross-attention
keys/values (see ``DreamDojoDiT.cross_attention_kv``).

Cached file (optional), looked up in the weights folder in this order:

- ``empty_prompt_embedding.safetensors`` with one tensor named ``embedding``;
- ``empty_prompt_embedding.pt`` holding a tensor (or ``{"embedding": tensor}``).

Shape (N, C) or (1, N, C) with C = ``crossattn_proj_in_channels`` (100352 for 2B).

The negative-prompt embedding (optional, same formats, files
``negative_prompt_embedding.safetensors`` / ``.pt``) is the unconditional branch of
classifier-free guidance (guidance ≠ 0), as in NVIDIA's sampler; without it that branch
uses the all-zero embedding.

Fallback when no file is present: the all-zero embedding. Zero text embeddings are in
the training distribution — Cosmos trains with text dropout, which zeroes the embedding —
so the model is well-defined on it; a warning is logged because outputs may differ
slightly from NVIDIA's reference, which uses the real empty-prompt embedding.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dream.errors import EngineError

__all__ = [
    "EMBEDDING_FILENAMES",
    "NEGATIVE_EMBEDDING_FILENAMES",
    "find_embedding_file",
    "load_empty_prompt_embedding",
    "load_negative_prompt_embedding",
    "save_empty_prompt_embedding",
]

logger = logging.getLogger(__name__)

EMBEDDING_FILENAMES = ("empty_prompt_embedding.safetensors", "empty_prompt_embedding.pt")
NEGATIVE_EMBEDDING_FILENAMES = ("negative_prompt_embedding.safetensors", "negative_prompt_embedding.pt")
_KEY = "embedding"


def find_embedding_file(folder: Path | None, names: tuple[str, ...] = EMBEDDING_FILENAMES) -> Path | None:
    """The cached (empty-prompt by default) embedding file in `folder`, if any."""
    if folder is None or not folder.is_dir():
        return None
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def load_empty_prompt_embedding(folder: Path | None, channels: int) -> torch.Tensor | None:
    """The raw empty-prompt embedding (1, N, channels) float32 from `folder`, or None (zeros fallback).

    Raises EngineError naming the file when it exists but is malformed.
    """
    path = find_embedding_file(folder)
    if path is None:
        logger.warning(
            "no cached empty-prompt embedding (%s) in %s; using the all-zero text embedding "
            "(in the training distribution through text dropout; outputs may differ slightly from NVIDIA's reference)",
            " or ".join(EMBEDDING_FILENAMES),
            folder,
        )
        return None
    return _read_embedding(path, channels, "empty-prompt")


def load_negative_prompt_embedding(folder: Path | None, channels: int) -> torch.Tensor | None:
    """The raw negative-prompt embedding (1, N, channels) float32 from `folder`, or None (absent).

    Raises EngineError naming the file when it exists but is malformed.
    """
    path = find_embedding_file(folder, NEGATIVE_EMBEDDING_FILENAMES)
    if path is None:
        logger.info("no negative-prompt embedding in %s: guidance would use the all-zero embedding", folder)
        return None
    return _read_embedding(path, channels, "negative-prompt")


def _read_embedding(path: Path, channels: int, what: str) -> torch.Tensor:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if _KEY not in tensors:
                raise EngineError(f"{str(path)!r} has no tensor named {_KEY!r} (found: {sorted(tensors)})")
            emb = tensors[_KEY]
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            emb = obj[_KEY] if isinstance(obj, dict) else obj
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(f"could not read the {what} embedding {str(path)!r}: {exc}") from exc
    if not isinstance(emb, torch.Tensor):
        raise EngineError(f"{str(path)!r} does not hold a tensor (got {type(emb).__name__})")
    stored_shape = tuple(emb.shape)
    if emb.ndim == 2:
        emb = emb[None]
    if emb.ndim != 3 or emb.shape[0] != 1 or emb.shape[-1] != channels:
        raise EngineError(
            f"{what} embedding {str(path)!r} has shape {stored_shape}; expected (N, {channels}) or (1, N, {channels})"
        )
    logger.info("loaded the %s embedding %s from %s", what, tuple(emb.shape), path)
    return emb.float()


def save_empty_prompt_embedding(path: Path | str, embedding: torch.Tensor) -> Path:
    """Write an embedding in the cached-file format (safetensors, tensor ``embedding``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({_KEY: embedding.detach().to("cpu").contiguous()}, str(path))
    return path
