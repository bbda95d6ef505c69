"""`dream view` over a policy-evaluation run (`dream eval --task policies`'s folder).

The page shows the family's table (success rate and mean final coverage in the
simulator and in the model, per policy), the correlations, a scatter of each policy's
simulator score against its model score, every start state's coverage curves in both
worlds for a chosen policy, and the run's side-by-side GIFs. No HTTP logic beyond the
routes here; the run is read from its JSON files.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

__all__ = ["PolicyEvalView", "create_policy_eval_app", "is_policy_eval_run"]

_STATIC = {"policies.js": "text/javascript", "view.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store"}


def is_policy_eval_run(uri: str) -> bool:
    """Whether `uri` is a local folder written by `dream eval --task policies`."""
    from dream.eval.policy_eval import RESULT_FILE

    path = Path(uri)
    return "://" not in uri and path.is_dir() and (path / RESULT_FILE).is_file()


class PolicyEvalView:
    """What the page asks for, read from a run folder."""

    def __init__(self, run_dir: str | Path) -> None:
        from dream.eval.policy_eval import RESULT_FILE

        self.run_dir = Path(run_dir)
        path = self.run_dir / RESULT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{str(self.run_dir)!r} holds no {RESULT_FILE}: not a `dream eval --task policies` run")
        self.summary_path = path

    def summary(self) -> dict[str, Any]:
        data = json.loads(self.summary_path.read_text())
        data["title"] = str(self.run_dir)
        data["videos"] = [p.name for p in self._videos()]
        return data

    def _videos(self) -> list[Path]:
        data = json.loads(self.summary_path.read_text())
        listed = [Path(p) for p in data.get("videos", [])]
        found = sorted((self.run_dir / "videos").glob("*.gif")) if (self.run_dir / "videos").is_dir() else []
        seen: dict[str, Path] = {}
        for p in [*listed, *found]:
            if p.is_file():
                seen.setdefault(p.name, p)
        return list(seen.values())

    def episodes(self, policy: str) -> dict[str, Any]:
        """Both worlds' episodes of `policy` (coverage curves included)."""
        out: dict[str, Any] = {"policy": policy}
        for world in ("simulator", "model"):
            path = self.run_dir / "episodes" / world / f"{policy}.json"
            if not path.is_file():
                raise FileNotFoundError(f"no {world} episodes of policy {policy!r} in this run")
            out[world] = json.loads(path.read_text())["episodes"]
        return out

    def video(self, name: str) -> bytes:
        for p in self._videos():
            if p.name == name:
                return p.read_bytes()
        raise FileNotFoundError(f"no video {name!r} in this run")


def create_policy_eval_app(view: PolicyEvalView) -> FastAPI:
    """The `dream view` app over one policy-evaluation run."""
    app = FastAPI(title="dream view · policy evaluation", docs_url=None, redoc_url=None, openapi_url=None)

    def static(name: str) -> bytes:
        return resources.files("dream.view").joinpath("static", name).read_bytes()

    def found(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except FileNotFoundError as exc:
            raise HTTPException(404, detail=str(exc)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(static("policies.html"), headers=_NO_STORE)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, detail=f"no static file {name!r}")
        return Response(static(name), media_type=_STATIC[name], headers=_NO_STORE)

    @app.get("/api/policy-eval")
    def summary() -> JSONResponse:
        return JSONResponse(view.summary())

    @app.get("/api/episodes")
    def episodes(policy: str = Query(...)) -> JSONResponse:
        return JSONResponse(found(view.episodes, policy))

    @app.get("/api/gif")
    def gif(name: str = Query(...)) -> Response:
        return Response(found(view.video, name), media_type="image/gif")

    return app
