"""sdk-surface §2 module name for input coercion (the code lives in `dream.inputs`)."""

from dream.errors import InputValidationError
from dream.inputs import (
    ActionsInput,
    StartFrameInput,
    coerce_actions,
    coerce_actions_batch,
    coerce_start_frame,
)

__all__ = [
    "ActionsInput",
    "InputValidationError",
    "StartFrameInput",
    "coerce_actions",
    "coerce_actions_batch",
    "coerce_start_frame",
]
