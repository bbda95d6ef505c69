"""Resources reachable from a client: models (and their handles), billing, sessions."""

from dream.resources.models import ModelHandle, Models

__all__ = ["ModelHandle", "Models"]
