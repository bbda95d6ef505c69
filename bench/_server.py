"""What the server benchmarks share: the spec check, a funded key, and a real `dream serve`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dream.engine.engine import Engine
    from dream.engine.specs import EngineSpec
    from dream.server.process import ServerProcess


def served_spec(slug: str, *, threads: int | None = None) -> tuple[Engine, EngineSpec] | None:
    """An (unloaded) engine for `slug` and its spec; None, after printing why, if it cannot run here."""
    from dream.engine.engine import Engine
    from dream.server.services.readiness import weights_status

    engine = Engine([slug], threads=threads)
    status = weights_status(engine, slug)
    if not status.available:
        print(f"skipped: {slug} cannot run here ({status.message})")
        return None
    return engine, engine.spec(slug)


def funded_key(db_url: str, customer: str, credits_mils: int) -> tuple[str, str]:
    """Create an API key with `credits_mils` in the ledger at `db_url`: (key, customer id)."""
    from dream.server.services.db import Database
    from dream.server.services.ledger import Ledger

    issued = Ledger(Database(db_url)).create_key(customer, credits_mils=credits_mils)
    return issued.key, issued.customer_id


def bench_server(
    tmp: str,
    db_url: str,
    spec: str,
    *,
    threads: int,
    batch_window_ms: float,
    max_concurrent: int = 0,
    extra_args: tuple[str, ...] = (),
    log_name: str = "serve.log",
) -> ServerProcess:
    """A `dream serve` subprocess on a free loopback port (use as a context manager).

    Rate limits are off (`--rate-limit 0`) so the benchmark measures serving, not throttling;
    `max_concurrent` 0 means no per-key concurrency cap.
    """
    from dream.server.process import ServerProcess

    serve_args = [
        "--spec", spec, "--db", db_url, "--threads", str(threads), "--batch-window-ms", str(batch_window_ms),
        "--rate-limit", "0", "--max-concurrent", str(max_concurrent), "--data-dir", f"{tmp}/data",
        "--log-level", "warning", *extra_args,
    ]
    return ServerProcess(serve_args, log_path=f"{tmp}/{log_name}")
