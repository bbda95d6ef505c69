"""One APIRouter per resource; each route parses, calls a service and encodes the result."""

from dream.server.routes import billing, info, models, predict, rollouts, sessions, videos

ROUTERS = [models.router, rollouts.router, predict.router, videos.router, billing.router, sessions.router, info.router]

__all__ = ["ROUTERS"]
