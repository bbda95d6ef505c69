"""The inference engine: specs, runners, samplers and deterministic video encoding.

Numpy in, numpy out; knows nothing of HTTP, billing or datasets. Importing this package
is cheap: torch is imported only when a model is loaded.
"""

from dream.engine.specs import DEFAULT_SPEC, EngineSpec

__all__ = ["DEFAULT_SPEC", "Engine", "EngineResult", "EngineSpec"]


def __getattr__(name: str):
    if name in ("Engine", "EngineResult"):
        from dream.engine import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'dream.engine' has no attribute {name!r}")
