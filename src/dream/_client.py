"""sdk-surface §2 module name for `Client`."""

from dream.client.sync_client import Client

__all__ = ["Client"]
