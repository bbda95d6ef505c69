"""Evaluation: image metrics (pure numpy) and the pusht-96 harness behind `dream eval`.

`dream.eval.metrics` needs only numpy. `run_pusht_eval` additionally needs the engine
extras (torch, safetensors) and the simulator (``pip install 'dream-engine[sim]'``);
it is imported on first use so that ``import dream.eval`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dream.eval.metrics import masked_mse, mse, psnr, psnr_from_mse, ssim

if TYPE_CHECKING:
    from dream.eval.pusht_eval import EvalResult, HorizonScores, run_pusht_eval

__all__ = [
    "EvalResult",
    "HorizonScores",
    "masked_mse",
    "mse",
    "psnr",
    "psnr_from_mse",
    "run_pusht_eval",
    "ssim",
]

_LAZY = {"EvalResult", "HorizonScores", "run_pusht_eval"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dream.eval import pusht_eval

        return getattr(pusht_eval, name)
    raise AttributeError(f"module 'dream.eval' has no attribute {name!r}")
