"""Machine-readable error codes, sent as ``X-DreamEngine-Error-Code`` and in WebSocket errors.

The status alone is ambiguous (wire-protocol §4 maps every other 4xx to ValidationError),
so the server names the error class too, the way huggingface_hub reads ``X-Error-Code``.
Our client reads it to raise the same class as the embedded transport would:
``input_validation`` → InputValidationError, ``model_not_found`` → ModelNotFoundError
(sent with 422 on rollout routes, where a 404 would trigger the 0.5.0 fallback).
Other clients ignore the header and go by the status.
"""

from __future__ import annotations

import re

from dream.errors import DreamError, InputValidationError

ERROR_CODE_HEADER = "X-DreamEngine-Error-Code"
INPUT_VALIDATION = "input_validation"
MODEL_NOT_FOUND = "model_not_found"


def error_code(exc: DreamError) -> str:
    """``input_validation`` for bad inputs, else the class's ``error_code`` or snake_case name."""
    if isinstance(exc, InputValidationError):
        return INPUT_VALIDATION
    explicit = getattr(type(exc), "error_code", None)
    if explicit:
        return str(explicit)
    name = type(exc).__name__
    if name.endswith("Error"):
        name = name[: -len("Error")]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
