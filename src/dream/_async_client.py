"""sdk-surface §2 module name for `AsyncClient`."""

from dream.client.async_client import AsyncClient

__all__ = ["AsyncClient"]
