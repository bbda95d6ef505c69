"""Idempotency records: a POST repeated with the same key runs and charges once.

A record is scoped to the customer and holds a fingerprint of the request (the decoded
inputs and sampling arguments, not the raw bytes or the endpoint), its state, and once
done the stored result. The flow, driven by `RolloutService`:

1. ``begin`` inserts a *pending* record (the primary key makes this the lock). If one
   exists: same fingerprint and *done* → replay the stored result; *pending* → another
   request is running it (the caller waits for it in-process); different fingerprint →
   422, a key must not be reused for a different request.
2. Success: the result is stored in the same database transaction that settles the
   credit reservation (`Ledger.settle(also=...)`), so a result is never kept uncharged
   nor charged unkept.
3. Failure: the pending record is removed, so a retry runs again (nothing was charged:
   the reservation was refunded).

A key is charged once whatever replica answers. The record (its metadata: ids, price,
fingerprint) lives in the shared database; a result's body (mp4, tar) lives in the data
folder of the replica that ran it. A replica that finds a *done* record whose body it
cannot read (another replica's folder, or pruned) does not charge again: it runs the
call again free of charge, answers it as a replay with the stored metadata (the same
rollout id and price; the engine is deterministic, so the same bytes) and keeps the body
under the record's body id, so it re-runs a key at most once.

The fingerprint ignores the endpoint, so our client's fallback from ``/v1/rollouts`` to
``/v1/predict`` (wire-protocol §7.3) with the same key replays instead of rerunning.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from dream.errors import ValidationError
from dream.server.services.db import Database, idempotency_records, new_id

MAX_KEY_LENGTH = 255
_BODY_REF = "_body_ref"  # meta key naming a body kept in the body store
T = TypeVar("T")
# Given the result to store, a statement that stores it inside the caller's transaction.
Completer = Callable[["StoredResult"], Callable[[Connection], None]]


class IdempotencyKeyReused(ValidationError):
    """The key was already used for a different request (HTTP 422)."""

    http_status = 422


class IdempotencyInProgress(ValidationError):
    """Another replica or process is running the request with this key (HTTP 409)."""

    http_status = 409


@dataclass(frozen=True)
class StoredResult:
    meta: dict[str, Any]
    body: bytes | None  # None: paid for, but the body is not readable on this replica
    ref: str | None = None  # the body's id in the body store


def fingerprint(*parts: Any) -> str:
    """SHA-256 over a JSON rendering of `parts` (bytes are hashed first)."""
    norm = [hashlib.sha256(p).hexdigest() if isinstance(p, (bytes, bytearray, memoryview)) else p for p in parts]
    return hashlib.sha256(json.dumps(norm, separators=(",", ":"), default=str).encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(
            f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} printable characters; got {len(key)} characters",
            status_code=422,
        )
    return key


class IdempotencyStore:
    """Pending/done records in the server database (shared by replicas on one database)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time, stale_after_s: float = 3600.0) -> None:
        self.db = db
        self.owner = new_id("proc")
        self._clock = clock
        self.stale_after_s = stale_after_s
        # Set by a server with leases: whether a record's owner still runs (else its claim
        # is taken over at once); without it, a claim older than stale_after_s is stale.
        self.owner_alive: Callable[[Connection, str], bool] | None = None
        # Where result bodies are kept (a server's video store); None: in the database row.
        self.bodies: Any = None

    def begin(self, scope: str, key: str, fp: str, ttl_s: float) -> tuple[str, StoredResult | None]:
        """("claimed", None), ("done", result) or ("pending", None); raises on a reused key."""
        now = self._clock()
        pk = and_(idempotency_records.c.scope == scope, idempotency_records.c.key == key)
        with self.db.begin() as conn:
            conn.execute(delete(idempotency_records).where(pk, idempotency_records.c.expires < now))
            row = conn.execute(select(idempotency_records).where(pk)).mappings().first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            idempotency_records.insert().values(
                                # A pending record outlives its TTL while the call runs (however
                                # long); the TTL counts from completion.
                                scope=scope, key=key, fingerprint=fp, state="pending", owner=self.owner,
                                created=now, expires=now + ttl_s + self.stale_after_s, ttl_s=ttl_s, meta=None,
                                body=None,
                            )
                        )
                    return "claimed", None
                except IntegrityError:  # another replica inserted it first
                    row = conn.execute(select(idempotency_records).where(pk)).mappings().first()
                    if row is None:  # pragma: no cover - deleted in between
                        return "pending", None
            if row["fingerprint"] != fp:
                raise IdempotencyKeyReused(
                    "Idempotency-Key was already used for a different request; use a new key for new inputs",
                    status_code=422,
                )
            if row["state"] == "done":
                meta = json.loads(row["meta"] or "{}")
                ref = meta.pop(_BODY_REF, None)
                if ref is None:
                    return "done", StoredResult(meta, bytes(row["body"] or b""))
                body = self.bodies.read_result(ref) if self.bodies is not None else None
                return "done", StoredResult(meta, body, ref)
            if self.owner_alive is not None:
                dead = not self.owner_alive(conn, row["owner"])
            else:
                dead = row["created"] < now - self.stale_after_s
            if row["owner"] != self.owner and dead:
                # Claimed by a server that stopped (its lease expired): take it over.
                conn.execute(
                    update(idempotency_records).where(pk).values(
                        owner=self.owner, created=now, expires=now + ttl_s + self.stale_after_s
                    )
                )
                return "claimed", None
            return "pending", None

    def keep_body(self, stored: StoredResult, body: bytes) -> None:
        """Keep a body made again (`StoredResult.body` was None) under the record's body id,
        so the next replay on this replica reads it instead of running again."""
        if self.bodies is not None and stored.ref is not None:
            self.bodies.put_result(body, rid=stored.ref)

    def complete_in(self, scope: str, key: str, result: StoredResult) -> Callable[[Connection], None]:
        """A statement to run inside another transaction (the ledger's settle).

        With a body store, the body is written there first and the row keeps its id: the
        database holds metadata only, whatever the size of the mp4s or tars.
        """
        meta, body = dict(result.meta), result.body
        if self.bodies is not None and body:
            meta[_BODY_REF] = self.bodies.put_result(body)
            body = None

        def run(conn: Connection) -> None:
            conn.execute(
                update(idempotency_records)
                .where(idempotency_records.c.scope == scope, idempotency_records.c.key == key)
                .values(
                    state="done", meta=json.dumps(meta), body=body,
                    expires=self._clock() + idempotency_records.c.ttl_s,
                )
            )

        return run

    def complete(self, scope: str, key: str, result: StoredResult) -> None:
        with self.db.begin() as conn:
            self.complete_in(scope, key, result)(conn)

    def discard_done(self, scope: str, key: str, fp: str) -> None:
        """Forget a finished record whose result turned out unusable (a queued job that then
        failed), so the next request with its key runs again instead of replaying it."""
        with self.db.begin() as conn:
            conn.execute(
                delete(idempotency_records).where(
                    idempotency_records.c.scope == scope,
                    idempotency_records.c.key == key,
                    idempotency_records.c.fingerprint == fp,
                    idempotency_records.c.state == "done",
                )
            )

    def abandon(self, scope: str, key: str) -> None:
        """Forget a pending record we own (the call failed; a retry may run it)."""
        with self.db.begin() as conn:
            conn.execute(
                delete(idempotency_records).where(
                    idempotency_records.c.scope == scope,
                    idempotency_records.c.key == key,
                    idempotency_records.c.state == "pending",
                    idempotency_records.c.owner == self.owner,
                )
            )

    def prune(self) -> int:
        """Delete expired records; returns how many."""
        with self.db.begin() as conn:
            return int(conn.execute(delete(idempotency_records).where(idempotency_records.c.expires < self._clock())).rowcount)



class IdempotentRunner:
    """Runs a call at most once per (scope, key); the async face of `IdempotencyStore`.

    A twin request arriving while the first runs in this process waits for it and then
    replays its result (or, if the first failed, runs itself). A twin running in another
    process makes this request answer 409. A finished twin whose body lives on another
    replica is re-run here free of charge (once; twins of the re-run wait for it).
    """

    def __init__(self, store: IdempotencyStore, *, on_replay: Callable[[str], Any] | None = None) -> None:
        self.store = store
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._on_replay = on_replay

    async def run(
        self,
        scope: str,
        key: tuple[str, float] | None,
        fp: str,
        call: Callable[[Completer | None], Awaitable[T]],
        replay: Callable[[StoredResult], T],
        kind: str,
        *,
        failed: Callable[[StoredResult], bool] | None = None,
        rerun: Callable[[StoredResult], Awaitable[T]] | None = None,
    ) -> T:
        """`call(complete)` must store its result with `complete` when it succeeds.

        `failed` (blocking, run in a thread) says whether a stored result stands for work
        that failed after it was stored (an async job); such a record is dropped and the
        call runs again, so a failure never blocks a retry with the same key.

        `rerun(stored)` answers a paid-for record whose body this replica cannot read: it
        makes the body again without charging, keeps it (`IdempotencyStore.keep_body`) and
        returns the replay. Kinds without one replay from the metadata alone.
        """
        if key is None:
            return await call(None)
        k, ttl = key
        while True:
            state, stored = await asyncio.to_thread(self.store.begin, scope, k, fp, ttl)
            if state == "done" and failed is not None and await asyncio.to_thread(failed, stored):
                await asyncio.to_thread(self.store.discard_done, scope, k, fp)
                continue
            if state == "done":
                assert stored is not None
                if stored.body is None:
                    twin = self._inflight.get((scope, k))
                    if twin is not None:  # this replica is making the body already: wait, then read it
                        await asyncio.shield(twin)
                        continue
                    if rerun is None:  # a kind whose replay needs no body (a job, a session)
                        result = replay(StoredResult(stored.meta, b"", stored.ref))
                    else:
                        result = await self._hold(scope, k, rerun(stored))
                else:
                    result = replay(stored)
                if self._on_replay is not None:
                    self._on_replay(kind)
                return result
            if state == "pending":
                twin = self._inflight.get((scope, k))
                if twin is None:
                    raise IdempotencyInProgress(
                        "a request with this Idempotency-Key is still running on another server; retry later",
                        status_code=409,
                    )
                await asyncio.shield(twin)
                continue
            return await self._hold(scope, k, self._claimed(scope, k, call))

    async def _claimed(self, scope: str, key: str, call: Callable[[Completer | None], Awaitable[T]]) -> T:
        try:
            return await call(lambda result: self.store.complete_in(scope, key, result))
        except BaseException:
            await run_cleanup(self.store.abandon, scope, key)  # before twins wake: they may run it then
            raise

    async def _hold(self, scope: str, key: str, work: Awaitable[T]) -> T:
        """Await `work` as this process's run of (scope, key): twins wait for it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[(scope, key)] = fut
        try:
            return await work
        finally:
            self._inflight.pop((scope, key), None)
            fut.set_result(None)


async def run_cleanup(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking cleanup in a thread, finishing it even while the caller is being cancelled."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        return await task
