"""Leases: what a server instance holds in the shared database, and who releases it.

Several `dream serve` replicas may share one ledger (PostgreSQL, or one SQLite file).
Each instance registers a row in ``server_instances`` and refreshes its heartbeat every
``lease_s / 3`` seconds. What it holds carries its id as ``owner``: credit reservations,
pending idempotency records (the in-flight lock of a request), queued or running async
rollouts. An owner whose heartbeat is older than ``lease_s`` (killed, frozen, or stopped)
has lost its leases, and any instance releases them, at start-up or at any later sweep:

* held reservations are refunded (and listed as refunds next to their debits);
* pending idempotency records are deleted, so a retry with the key runs (once);
* queued / running async rollouts are marked failed (their reservation is refunded).

A live replica's holds are never touched, however long its request runs: there is no
start-up "crash recovery" that would take work from a running neighbour.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Connection

from dream.server.services.db import (
    Database,
    idempotency_records,
    instances,
    new_id,
    reservations,
    rollout_records,
)

if TYPE_CHECKING:
    from dream.server.services.ledger import Ledger

logger = logging.getLogger("dream.server.leases")


class Leases:
    """This instance's heartbeat, and the sweep that releases dead instances' holds."""

    def __init__(self, db: Database, ledger: Ledger, *, lease_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0; got {lease_s}")
        self.db = db
        self.ledger = ledger
        self.lease_s = float(lease_s)
        self.id = new_id("srv")[:40]
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.housekeeping: list[Callable[[], Any]] = []  # also run at every beat (pruning)

    # ----------------------------------------------------------------- liveness

    def register(self) -> None:
        now = self._clock()
        with self.db.begin() as conn:  # again after a stop (an app started twice): refresh the row
            if conn.execute(update(instances).where(instances.c.id == self.id).values(heartbeat=now)).rowcount:
                return
            conn.execute(instances.insert().values(
                id=self.id, started=now, heartbeat=now, info=f"{socket.gethostname()} pid {os.getpid()}"[:200]
            ))

    def heartbeat(self) -> None:
        with self.db.begin() as conn:
            conn.execute(update(instances).where(instances.c.id == self.id).values(heartbeat=self._clock()))

    def _live_owners(self, conn: Connection) -> Any:
        """A subquery: ids of instances whose lease still holds."""
        return select(instances.c.id).where(instances.c.heartbeat >= self._clock() - self.lease_s)

    def owner_alive(self, conn: Connection, owner: str | None) -> bool:
        """Whether `owner` (an instance id) still holds its leases (inside a transaction)."""
        if owner is None:
            return False
        row = conn.execute(select(instances.c.heartbeat).where(instances.c.id == owner)).first()
        return row is not None and row[0] >= self._clock() - self.lease_s

    # ----------------------------------------------------------------- release

    def sweep(self) -> dict[str, int]:
        """Release every hold of an instance whose lease expired; returns counts per kind."""
        from dream.server.services.ledger import Reservation

        cutoff = self._clock() - self.lease_s
        with self.db.begin() as conn:
            live = self._live_owners(conn)
            orphaned = or_(reservations.c.owner.not_in(live),
                           and_(reservations.c.owner.is_(None), reservations.c.created < cutoff))
            held = conn.execute(
                select(reservations).where(reservations.c.state == "held", orphaned)
            ).mappings().all()
            pending = conn.execute(
                delete(idempotency_records).where(
                    idempotency_records.c.state == "pending",
                    idempotency_records.c.owner.not_in(self._live_owners(conn)),
                    idempotency_records.c.created < cutoff,
                )
            ).rowcount
            jobs = conn.execute(
                select(rollout_records.c.id).where(
                    rollout_records.c.status.in_(("queued", "running")),
                    or_(rollout_records.c.owner.not_in(self._live_owners(conn)),
                        and_(rollout_records.c.owner.is_(None), rollout_records.c.updated < cutoff)),
                )
            ).all()
        refunded = sum(
            1 for r in held
            if self.ledger.refund(
                Reservation(id=r["id"], customer_id=r["customer_id"], amount_mils=int(r["amount_mils"]),
                            request_id=r["request_id"]),
                reason="the server running this call stopped (lease expired)",
            )
        )
        failed = 0
        for (rid,) in jobs:
            failed += self._fail_job(rid)
        with self.db.begin() as conn:
            conn.execute(delete(instances).where(instances.c.heartbeat < cutoff, instances.c.id != self.id))
        counts = {"reservations_refunded": refunded, "idempotency_released": int(pending or 0), "rollouts_failed": failed}
        if any(counts.values()):
            logger.warning("released the holds of stopped server instances: %s", counts)
        return counts

    def _fail_job(self, rollout_id: str) -> int:
        import json

        with self.db.begin() as conn:
            row = conn.execute(select(rollout_records).where(rollout_records.c.id == rollout_id)).mappings().first()
            if row is None or row["status"] not in ("queued", "running"):
                return 0
            env = json.loads(row["envelope"])
            message = "the server running this rollout stopped before it finished; it was refunded"
            env["status"] = "failed"
            env["error"] = {"code": "rollout_failed", "message": message}
            conn.execute(
                update(rollout_records).where(rollout_records.c.id == rollout_id, rollout_records.c.status == row["status"])
                .values(status="failed", envelope=json.dumps(env), error=message, updated=self._clock())
            )
        return 1

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Register, release what stopped instances left, then heartbeat + sweep in a thread."""
        self.register()
        self.sweep()
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="dream-leases", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """One heartbeat: refresh this instance, release dead ones' holds, prune."""
        self.heartbeat()
        self.sweep()
        for job in self.housekeeping:
            job()

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.beat()
            except Exception:  # a database hiccup must not end the heartbeat
                logger.exception("lease heartbeat failed; retrying")

    def stop(self) -> None:
        """Stop heartbeating and give up this instance's leases at once (a clean shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            with self.db.begin() as conn:
                conn.execute(update(instances).where(instances.c.id == self.id).values(heartbeat=0.0))
        except Exception:
            logger.exception("could not mark this server instance stopped")
