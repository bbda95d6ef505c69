"""Convert a DreamDojo DiT checkpoint (.pt or DCP folder) to one safetensors file (``dream convert``).

The output keeps NVIDIA's ``net.*`` key layout, holds only model weights (ignored keys and
the non-EMA copy of a full checkpoint are dropped), is validated against the spec's
config before writing, and loads without pickle, with mmap, much faster than DCP. It is
written to a temporary name and renamed, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from dream.engine.models.dreamdojo.config import config_for
from dream.engine.models.dreamdojo.dit import DreamDojoDiT
from dream.engine.models.dreamdojo.loader import PREFIX, expected_shapes, load_dit_state_dict
from dream.errors import EngineError

__all__ = ["convert_checkpoint"]

logger = logging.getLogger(__name__)

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


def convert_checkpoint(
    src: Path | str,
    dst: Path | str,
    *,
    slug: str = "dreamdojo-2b-gr1",
    dtype: str | None = None,
    allow_pickle: bool = False,
    prefer_ema: bool = True,
) -> Path:
    """Read the DiT checkpoint at `src`, validate it for spec `slug`, write safetensors to `dst`.

    `src`: a ``.pt``/``.pth`` file, a DCP folder, or a weights folder holding one.
    `dst`: a ``.safetensors`` path, or a folder (→ ``<dst>/model.safetensors``).
    `dtype`: cast every tensor ("bf16", "fp16", "fp32"); None keeps the stored dtypes.
    Returns the written path. Raises WeightsNotFoundError / EngineError naming the problem.
    """
    config = config_for(slug)
    with torch.device("meta"):
        model = DreamDojoDiT(config.dit)
    state, report = load_dit_state_dict(
        src, expected_shapes(model), allow_pickle=allow_pickle, prefer_ema=prefer_ema
    )
    cast = None
    if dtype is not None:
        try:
            cast = _DTYPES[dtype.lower()]
        except KeyError:
            raise EngineError(
                f"unknown dtype {dtype!r}; expected one of {', '.join(sorted(_DTYPES))}"
            ) from None
    out = Path(dst).expanduser()
    if out.suffix != ".safetensors":
        out = out / "model.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)

    from safetensors.torch import save_file

    tensors = {PREFIX + k: (v.to(cast) if cast is not None else v).contiguous() for k, v in state.items()}
    metadata = {
        "format": "pt",
        "dream.source": str(report.checkpoint.path),
        "dream.source_format": report.checkpoint.format,
        "dream.source_prefix": report.prefix,
        "dream.slug": slug,
        "dream.dit_config": json.dumps(config.dit.to_dict()),
    }
    tmp = out.with_name(out.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("wrote %d tensors to %s (ignored %d keys)", len(tensors), out, len(report.ignored_keys))
    return out
