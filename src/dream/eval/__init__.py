"""Evaluation: image metrics (pure numpy) and the pusht-96 harness behind `dream eval`.

`dream.eval.metrics` needs only numpy. `run_pusht_eval` additionally needs the engine
extras (torch, safetensors) and the simulator (``pip install 'dream-engine[sim]'``);
it is imported on first use so that ``import dream.eval`` stays cheap. So is
`run_gr1_eval` (`dream.eval.gr1_eval`: DreamDojo on GR-1 LeRobot data; needs [torch,io]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dream.eval.metrics import masked_mse, mse, psnr, psnr_from_mse, ssim

if TYPE_CHECKING:
    from dream.eval.gr1_eval import Gr1EvalResult, run_gr1_eval
    from dream.eval.pusht_eval import EvalResult, HorizonScores, run_pusht_eval

__all__ = [
    "EvalResult",
    "Gr1EvalResult",
    "HorizonScores",
    "masked_mse",
    "mse",
    "psnr",
    "psnr_from_mse",
    "run_gr1_eval",
    "run_pusht_eval",
    "ssim",
]

_LAZY = {"EvalResult", "HorizonScores", "run_pusht_eval"}


_LAZY_GR1 = {"Gr1EvalResult", "run_gr1_eval"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_GR1:
        from dream.eval import gr1_eval

        return getattr(gr1_eval, name)
    if name in _LAZY:
        from dream.eval import pusht_eval

        return getattr(pusht_eval, name)
    raise AttributeError(f"module 'dream.eval' has no attribute {name!r}")
