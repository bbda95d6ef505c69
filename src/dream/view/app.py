"""The viewer over HTTP: one router for the page and its JSON/media API, and `create_app`.

The router is thin: each route parses its query, calls the view service that
`get_view` returns for the request, and encodes the answer. `dream view` mounts it at
`/` over an `OutputView`; `dream serve` mounts it at `/ui` with a `get_view` that picks
the signed-in key's rollout history. Row ids travel as a query parameter (`?id=`), never
in the path, since a failed row's id may be anything.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dream.view.service import OutputView, RowNotFound

__all__ = ["STATIC_FILES", "create_app", "view_router"]

STATIC_FILES = {"view.js": "text/javascript", "view.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store"}


def _static(name: str) -> bytes:
    return resources.files("dream.view").joinpath("static", name).read_bytes()


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (RowNotFound, FileNotFoundError) as exc:
        raise HTTPException(404, detail=str(exc) if isinstance(exc, RowNotFound) else exc.args[0]) from None
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def view_router(get_view: Callable[..., Any]) -> APIRouter:
    """The page (`/`), its assets (`/static/…`) and its API (`/api/…`) over `get_view`'s service."""
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers=_NO_STORE)

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, detail=f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name], headers=_NO_STORE)

    @router.get("/api/summary")
    def summary(view: Any = Depends(get_view)) -> JSONResponse:
        return JSONResponse(view.summary())

    @router.get("/api/rows")
    def rows(
        view: Any = Depends(get_view),
        offset: int = Query(0, ge=0),
        limit: int = Query(60, ge=1, le=1000),
        status: str = "all",
        q: str = "",
        sort: str | None = None,
        desc: bool = False,
    ) -> JSONResponse:
        page = _call(view.page, offset=offset, limit=limit, status=status, query=q, sort=sort or None,
                     descending=desc)
        return JSONResponse(page)

    @router.get("/api/row")
    def row(id: str, view: Any = Depends(get_view)) -> JSONResponse:
        return JSONResponse(_call(view.row, id))

    @router.get("/api/video")
    def video(id: str, view: Any = Depends(get_view)) -> Response:
        return Response(_call(view.video, id), media_type="video/mp4")

    @router.get("/api/thumb")
    def thumb(id: str, view: Any = Depends(get_view)) -> Response:
        return Response(_call(view.image, "thumb", id), media_type="image/png")

    @router.get("/api/strip")
    def strip(id: str, view: Any = Depends(get_view)) -> Response:
        return Response(_call(view.image, "strip", id), media_type="image/png")

    @router.get("/api/compare")
    def compare(id: str, view: Any = Depends(get_view)) -> JSONResponse:
        return JSONResponse(_call(view.compare, id))

    @router.get("/api/reference/strip")
    def reference_strip(id: str, view: Any = Depends(get_view)) -> Response:
        return Response(_call(view.reference_image, "strip", id), media_type="image/png")

    @router.get("/api/reference/video")
    def reference_video(id: str, view: Any = Depends(get_view)) -> Response:
        return Response(_call(view.reference_video, id), media_type="video/mp4")

    return router


def create_app(view: OutputView) -> FastAPI:
    """The `dream view` app: the viewer at `/` over one output."""
    app = FastAPI(title="dream view", docs_url=None, redoc_url=None, openapi_url=None)

    def get_view(request: Request) -> OutputView:
        return view

    app.include_router(view_router(get_view))
    return app
