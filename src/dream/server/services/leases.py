"""Leases: what a server instance holds in the shared database, and who releases it.

Several `dream serve` replicas may share one ledger (PostgreSQL, or one SQLite file).
Each instance registers a row in ``server_instances`` and refreshes its heartbeat every
``lease_s / 3`` seconds. What it holds carries its id as ``owner``: credit reservations,
pending idempotency records (the in-flight lock of a request), queued or running async
rollouts. An owner whose heartbeat is older than ``lease_s`` (killed, frozen, or stopped)
has lost its leases, and any instance releases them, at start-up or at any later sweep:

* held reservations are refunded (and listed as refunds next to their debits);
* pending idempotency records are deleted, so a retry with the key runs (once);
* queued / running async rollouts are marked failed (their reservation is refunded);
* its rollout slots (a key's concurrency, `services.limiter`) are given back.

A live replica's holds are never touched, however long its request runs: there is no
start-up "crash recovery" that would take work from a running neighbour.

Replicas must agree on a few settings to answer for each other (`ReplicaConfig`): the
URL secret (a video_url or a webhook signature made by one is checked by another) and
where videos are kept (one shared ``--data-dir``, or each replica its own ``--public-url``
so the URLs it hands out lead back to it). A replica whose settings contradict a live
replica's refuses to start, naming the setting and the other replica.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.engine import Connection

from dream.server.services.db import (
    Database,
    idempotency_records,
    instances,
    new_id,
    reservations,
    rollout_records,
)
from dream.server.services.limiter import release_slots_of_dead

if TYPE_CHECKING:
    from dream.server.services.ledger import Ledger

logger = logging.getLogger("dream.server.leases")

DATA_DIR_ID_FILE = ".dream-data-dir-id"


class ReplicaConfigError(ValueError):
    """This replica's settings contradict those of a live replica on the same ledger."""


def data_dir_id(directory: Path) -> str:
    """The id of a data folder: read from its id file, created on first use. Replicas that
    share the folder (one disk, NFS) read the same id; separate folders have different ones."""
    import contextlib

    from dream.server.services.db import new_id

    path = directory / DATA_DIR_ID_FILE
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another replica may create it at the same moment
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(new_id("dir")[:40])
    for _ in range(50):
        found = path.read_text().strip()
        if found:
            return found
        time.sleep(0.01)  # created by another replica that has not written it yet
    raise RuntimeError(f"{path} is empty; delete it and start again")


@dataclass(frozen=True)
class ReplicaConfig:
    """What a replica registers so that others on its ledger can check they agree with it."""

    secret_check: str  # HMAC of a fixed text under the URL secret: equal iff the secrets are
    data_dir_id: str
    public_url: str | None
    random_secret: bool = False  # no --url-secret was given (one was drawn for this process)

    @classmethod
    def of(cls, *, secret: bytes, data_dir: Path, public_url: str | None, random_secret: bool) -> ReplicaConfig:
        check = hmac.new(secret, b"dream-engine replica check", hashlib.sha256).hexdigest()
        return cls(check, data_dir_id(data_dir), (public_url or "").rstrip("/") or None, random_secret)

    def conflict(self, other: dict[str, Any]) -> str | None:
        """Why this replica cannot serve next to `other` (a server_instances row), or None."""
        who = f"replica {other['id']} ({other['info']})"
        if other.get("secret_check") and other["secret_check"] != self.secret_check:
            mine = " (this one has none: a random one was drawn)" if self.random_secret else ""
            return (f"{who} signs video URLs and webhooks with another --url-secret{mine}; replicas on one ledger "
                    "must share one, so that each accepts the URLs and signatures of the others")
        if other.get("data_dir_id") and other["data_dir_id"] != self.data_dir_id:
            theirs = (other.get("public_url") or "").rstrip("/") or None
            if not (self.public_url and theirs and self.public_url != theirs):
                return (f"{who} keeps its videos in another --data-dir; give the replicas one shared --data-dir, "
                        "or each its own --public-url (so a video_url leads back to the replica that holds the video)")
        return None


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
        self.config: ReplicaConfig | None = None  # checked against live replicas' when registering

    # ----------------------------------------------------------------- liveness

    def register(self) -> None:
        """Join the ledger's live instances; ReplicaConfigError if `config` contradicts a live one's."""
        now = self._clock()
        with self.db.begin() as conn:  # again after a stop (an app started twice): refresh the row
            if conn.dialect.name == "postgresql":  # one registration at a time, so two cannot both pass the check
                conn.execute(text("LOCK TABLE server_instances IN SHARE ROW EXCLUSIVE MODE"))
            if conn.execute(update(instances).where(instances.c.id == self.id).values(heartbeat=now)).rowcount:
                return
            self._check_config(conn)
            cfg = self.config
            conn.execute(instances.insert().values(
                id=self.id, started=now, heartbeat=now, info=f"{socket.gethostname()} pid {os.getpid()}"[:200],
                secret_check=cfg.secret_check if cfg else None, data_dir_id=cfg.data_dir_id if cfg else None,
                public_url=cfg.public_url if cfg else None,
            ))

    def check_config(self) -> None:
        """ReplicaConfigError if this replica's `config` contradicts a live replica's (read only)."""
        with self.db.begin() as conn:
            self._check_config(conn)

    def _check_config(self, conn: Connection) -> None:
        if self.config is None:
            return
        rows = conn.execute(
            select(instances).where(instances.c.id != self.id, instances.c.heartbeat >= self._clock() - self.lease_s)
        ).mappings().all()
        for row in rows:
            why = self.config.conflict(dict(row))
            if why:
                raise ReplicaConfigError(f"cannot join the replicas on this ledger: {why}")

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
            slots = release_slots_of_dead(conn, self._live_owners(conn))
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
        counts = {"reservations_refunded": refunded, "idempotency_released": int(pending or 0), "rollouts_failed": failed,
                  "slots_released": slots}
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
