"""One APIRouter per resource; each route parses, calls a service and encodes the result."""

from dream.server.routes import billing, info, models, predict, rollouts, sessions, ui, videos

ROUTERS = [models.router, rollouts.router, predict.router, videos.router, billing.router, sessions.router, info.router]
ROUTERS.append(ui.router)  # the browser page at /ui (dream.view over the key's rollout history)

__all__ = ["ROUTERS"]
