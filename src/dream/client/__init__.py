"""Client and AsyncClient over two transports: the embedded engine (local) and HTTP."""

from dream.client.async_client import AsyncClient
from dream.client.sync_client import Client

__all__ = ["AsyncClient", "Client"]
