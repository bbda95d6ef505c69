"""`dream view`: a browser page over a sink's output (and, in `dream serve`, at `/ui`).

    from dream.view import open_view
    app = open_view("out/bulk")            # a FastAPI app; `dream view out/bulk` serves it

Layers: `store` reads the output's files (folder, S3, Hub), `catalog` its metadata rows,
`media` renders thumbnails / frame strips / per-frame PSNR, `service` answers the page's
calls, and `app` is the thin HTTP router over a service. `qc` scores augmented rows
against their parents (`dream qc`). Needs the [server] and [io] extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["open_view"]


def open_view(uri: str, *, parent_key: str | None = None, **store_options: Any) -> FastAPI:
    """The viewer app over a sink output (folder, `s3://…` or `hf://datasets/…`), or over a
    policy-evaluation run folder (`dream eval --task policies`).

    Reads the metadata table now, so a wrong path fails here (FileNotFoundError naming it)
    rather than in the browser.
    """
    from dream.view.policy_eval import PolicyEvalView, create_policy_eval_app, is_policy_eval_run

    if is_policy_eval_run(uri):  # a `dream eval --task policies` run folder
        return create_policy_eval_app(PolicyEvalView(uri))
    from dream.view.app import create_app
    from dream.view.catalog import Catalog
    from dream.view.service import OutputView
    from dream.view.store import open_store

    catalog = Catalog(open_store(uri, **store_options), parent_key=parent_key)
    catalog.refresh()
    return create_app(OutputView(catalog))
