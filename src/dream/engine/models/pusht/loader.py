"""Strict safetensors loading for `PushTWorldModel`.

A weights file holds the model's state dict (float32 tensors named exactly as the
module's parameters) and, in its metadata, every `PushTConfig` field as
``config.<field>`` (see `PushTConfig.to_metadata`) plus free-form provenance under
other keys. Loading builds the model from that config, then copies tensor by tensor
and fails naming every missing, unexpected or mis-shaped key: a file that only half
fits must never load silently.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dream.engine.models.pusht.model import PushTConfig, PushTWorldModel
from dream.errors import EngineError

__all__ = ["load_pusht_model", "read_pusht_weights", "state_dict_mismatches"]


def read_pusht_weights(path: str | Path) -> tuple[PushTConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Read (config, tensors, metadata) from a pusht safetensors file; EngineError if unreadable."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (OSError, ValueError, RuntimeError) as exc:
        raise EngineError(f"cannot read pusht weights {path}: {exc}") from exc
    if not any(key.startswith("config.") for key in metadata):
        raise EngineError(
            f"{path} has no config.* metadata: not a pusht weights file written by training/export.py"
        )
    try:
        config = PushTConfig.from_metadata(metadata)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise EngineError(f"bad config metadata in {path}: {exc}") from exc
    return config, tensors, metadata


def state_dict_mismatches(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """One line per problem: missing key, unexpected key, wrong shape or non-float32 dtype."""
    expected = model.state_dict()
    problems = [f"missing: {name} {tuple(t.shape)}" for name, t in expected.items() if name not in tensors]
    problems += [
        f"unexpected: {name} {tuple(t.shape)}" for name, t in tensors.items() if name not in expected
    ]
    for name, t in tensors.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            problems.append(
                f"shape mismatch: {name} is {tuple(t.shape)}, the model expects {tuple(expected[name].shape)}"
            )
        elif name in expected and t.dtype != torch.float32:
            problems.append(f"dtype mismatch: {name} is {t.dtype}, the model expects torch.float32")
    return problems


def load_pusht_model(path: str | Path, *, device: str = "cpu") -> PushTWorldModel:
    """Build the model from the file's config and load its tensors strictly; eval mode, on `device`."""
    config, tensors, _ = read_pusht_weights(path)
    model = PushTWorldModel(config)
    problems = state_dict_mismatches(model, tensors)
    if problems:
        listing = "\n  ".join(problems)
        raise EngineError(f"pusht weights {path} do not fit the model built from their config:\n  {listing}")
    model.load_state_dict(tensors, strict=True)
    return model.eval().to(device)
