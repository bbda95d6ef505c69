"""Per-key limits, shared by every replica on one ledger: requests per second and rollouts in flight.

Both live in the ledger database, so N replicas give a key its rate and its concurrency
once, not N times:

* **Rate**: the generic cell rate algorithm (GCRA), the token bucket kept as one number
  per key, ``tat``: the time at which the key's burst is whole again. A request is let
  through when ``tat <= now + (burst - 1) / rate`` and moves ``tat`` on by ``1 / rate``;
  that is one conditional UPDATE, so two replicas can never hand out the same token.
* **Concurrency**: ``active`` in the same row counts the key's rollouts in flight on all
  replicas. A slot is taken by a conditional UPDATE (``active < cap``) and recorded in
  ``rollout_slots`` as a lease of the replica running it: when that replica dies its
  slots are given back by the others (`services.leases`), as its credit reservations are.

Both answer with `RateLimitError` (HTTP 429) carrying ``retry_after`` in seconds, which
the server sends as ``Retry-After`` and the client's `RetryPolicy` honours. The clock is
injected (wall-clock time by default: replicas compare it), so tests move time by hand.
A rate of 0 or a cap of 0 turns a limit off without touching the database.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from dream.errors import RateLimitError
from dream.server.services.db import Database, limit_keys, new_id, rollout_slots


@dataclass
class HeldSlot:
    """A rollout slot taken with `Limiter.take` (``slot`` None: the key has no cap)."""

    limiter: Limiter
    key: str
    slot: str | None
    released: bool = False

    def release(self) -> None:
        """Give it back (blocking; once)."""
        if self.slot is not None and not self.released:
            self.released = True
            self.limiter.release(self.key, self.slot)

    def release_in(self, conn: Connection) -> None:
        """Give it back inside another transaction (a settle); set `released` once that commits."""
        if self.slot is not None and not self.released:
            _release(conn, self.key, self.slot)


def _retry_after(seconds: float) -> float:
    """Round up to 0.1 s so a client that waits exactly this long finds a token."""
    return max(0.1, math.ceil(seconds * 10) / 10)


class Limiter:
    """Request-rate and concurrency limits per limiter key (API key id, or anon:… / ip:…)."""

    def __init__(
        self,
        db: Database,
        *,
        rate: float,
        burst: int,
        max_concurrent: int,
        concurrency_retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.max_concurrent = int(max_concurrent)
        self.concurrency_retry_after_s = concurrency_retry_after_s
        self._clock = clock
        self.owner = owner or new_id("proc")[:40]  # the server instance whose leases its slots are

    # ----------------------------------------------------------------- rate

    def check_request(self, key: str, *, rate: float | None = None, burst: int | None = None) -> None:
        """Count one request against `key`'s rate; RateLimitError when its burst is spent.

        `rate` / `burst` override the defaults for this key (per-key limits from the ledger).
        """
        if (self.rate if rate is None else float(rate)) <= 0:
            return
        with self.db.begin() as conn:
            self.check_in(conn, key, rate=rate, burst=burst, relaxed=True)

    def check_in(
        self, conn: Connection, key: str, *, rate: float | None = None, burst: int | None = None, relaxed: bool = False
    ) -> None:
        """`check_request` inside the caller's transaction (authentication's, say).

        `relaxed`: the transaction writes nothing else, so on PostgreSQL it commits without
        waiting for its WAL flush (a crash loses at most a few tokens' worth of state).
        """
        rate = self.rate if rate is None else float(rate)
        burst_f = self.burst if burst is None else max(1.0, float(burst))
        if rate <= 0:
            return
        if relaxed and conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
        interval = 1.0 / rate
        now = self._clock()
        row = limit_keys.c
        for _ in range(3):
            # The common case: one conditional UPDATE (which also takes the row's write lock).
            if conn.execute(
                update(limit_keys)
                .where(row.key == key, row.tat <= now + (burst_f - 1.0) * interval)
                .values(tat=case((row.tat > now, row.tat), else_=now) + interval)
            ).rowcount:
                return
            tat = conn.execute(select(row.tat).where(row.key == key)).scalar()
            if tat is not None:
                break  # refused
            if _insert_key(conn, key, tat=now + interval):  # the key's first request
                return
        else:  # pragma: no cover - inserted and pruned again in between, three times
            return
        retry = _retry_after(tat + interval - burst_f * interval - now)
        raise RateLimitError(
            f"rate limit: more than {rate:g} requests/s (burst {burst_f:g}) for this key; retry in {retry:g} s",
            retry_after=retry,
        )

    # ----------------------------------------------------------------- concurrency

    def acquire(self, key: str, cap: int) -> str:
        """Take one of `key`'s `cap` rollout slots (all replicas together); returns the slot id.

        RateLimitError (429, ``retry_after`` = concurrency_retry_after_s) when all are taken.
        """
        with self.db.begin() as conn:
            return self.acquire_in(conn, key, cap)

    def acquire_in(self, conn: Connection, key: str, cap: int) -> str:
        """`acquire` inside the caller's transaction (a credit reservation's, say)."""
        row = limit_keys.c
        for _ in range(3):
            if conn.execute(
                update(limit_keys).where(row.key == key, row.active < cap).values(active=row.active + 1)
            ).rowcount:
                slot = new_id("slot")
                conn.execute(rollout_slots.insert().values(id=slot, key=key, owner=self.owner, created=self._clock()))
                return slot
            active = conn.execute(select(row.active).where(row.key == key)).scalar()
            if active is not None:
                break  # all taken
            _insert_key(conn, key, tat=0.0)  # the key's first rollout: take the slot on the next pass
        else:  # pragma: no cover - inserted and pruned again in between, three times
            raise RuntimeError(f"could not take a rollout slot for {key!r}")
        raise RateLimitError(
            f"rate limit: {active} rollouts already running for this key (max {cap}); "
            f"retry in {self.concurrency_retry_after_s:g} s",
            retry_after=self.concurrency_retry_after_s,
        )

    def release(self, key: str, slot: str) -> None:
        """Give a slot back (once: a slot already released by a lease sweep is left alone)."""
        with self.db.begin() as conn:
            _release(conn, key, slot)

    def take(self, principal: Any) -> HeldSlot:
        """One of the principal's rollout slots (its per-key cap), blocking; give it back with
        `HeldSlot.release` (or `release_in` a transaction of the caller's)."""
        cap, key = self.cap(principal), principal.limiter_key
        return HeldSlot(self, key, self.acquire(key, cap) if cap > 0 else None)

    def cap(self, principal: Any) -> int:
        limits = getattr(principal, "limits", None)
        if limits is not None and limits.max_concurrent is not None:
            return int(limits.max_concurrent)
        return self.max_concurrent

    @contextmanager
    def rollout_slot(self, key: str, *, max_concurrent: int | None = None) -> Iterator[None]:
        """Hold one of `key`'s concurrent-rollout slots for the duration of the block (blocking)."""
        cap = self.max_concurrent if max_concurrent is None else int(max_concurrent)
        if cap <= 0:
            yield
            return
        slot = self.acquire(key, cap)
        try:
            yield
        finally:
            self.release(key, slot)

    @asynccontextmanager
    async def slot(self, principal: Any) -> AsyncIterator[None]:
        """`rollout_slot` for a principal (its per-key cap), with the database calls in a thread."""
        from dream.server.services.idempotency import run_cleanup

        cap, key = self.cap(principal), principal.limiter_key
        if cap <= 0:
            yield
            return
        slot = await asyncio.to_thread(self.acquire, key, cap)
        try:
            yield
        finally:
            await run_cleanup(self.release, key, slot)

    def active(self, key: str) -> int:
        """Rollouts of `key` in flight on all replicas."""
        with self.db.begin() as conn:
            return int(conn.execute(select(limit_keys.c.active).where(limit_keys.c.key == key)).scalar() or 0)

    # ----------------------------------------------------------------- housekeeping

    def prune(self) -> int:
        """Forget keys with nothing to remember (a whole burst, no rollout in flight)."""
        with self.db.begin() as conn:
            return int(conn.execute(
                delete(limit_keys).where(limit_keys.c.active == 0, limit_keys.c.tat < self._clock())
            ).rowcount)


def _insert_key(conn: Connection, key: str, *, tat: float) -> bool:
    """Insert `key`'s row; False when another replica inserted it first."""
    try:
        with conn.begin_nested():
            conn.execute(limit_keys.insert().values(key=key, tat=tat, active=0))
        return True
    except IntegrityError:
        return False


def _release(conn: Connection, key: str, slot: str) -> bool:
    if not conn.execute(delete(rollout_slots).where(rollout_slots.c.id == slot)).rowcount:
        return False
    conn.execute(
        update(limit_keys).where(limit_keys.c.key == key, limit_keys.c.active > 0).values(active=limit_keys.c.active - 1)
    )
    return True


def release_slots_of_dead(conn: Connection, live_owners: Any) -> int:
    """Give back the slots of replicas not in `live_owners` (a subquery of instance ids)."""
    rows = conn.execute(
        select(rollout_slots.c.id, rollout_slots.c.key).where(rollout_slots.c.owner.not_in(live_owners))
    ).all()
    return sum(1 for slot, key in rows if _release(conn, key, slot))
