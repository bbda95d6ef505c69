"""Optional dependencies: import one, or say which extra to install."""

from __future__ import annotations

import importlib
from typing import Any

# Which extra provides a package; anything not listed comes with [io].
_EXTRA_OF = {"av": "decode"}


def extra_for(module: str) -> str:
    """The extra (`pip install 'dream-engine[<extra>]'`) that provides `module`."""
    return _EXTRA_OF.get(module.split(".")[0], "io")


def require(module: str, what: str) -> Any:
    """Import `module` or raise an ImportError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(
            f"{what} needs the '{package}' package: pip install 'dream-engine[{extra_for(module)}]'"
        ) from exc
