"""Customers, API keys and prepaid credits in mils (1 mil = $0.0001).

Money rules (DESIGN decision 8):

* A call's expected charge is **reserved** before any engine work: a conditional UPDATE
  takes it from the balance only if the balance covers it (else 402 with both figures),
  and a ``debit`` transaction is written in the same database transaction.
* On success the reservation is **settled** (nothing moves; the debit stands).
* On any failure it is **refunded**: the mils go back and a ``refund`` transaction is
  listed next to the debit (wire-protocol §12.3).
* A reservation is a lease of the server instance that made it: once that instance's
  heartbeat expires (killed mid-rollout), any replica refunds it (`services.leases`).

So at every moment: balance = credits − debits + refunds, and the sum of settled
reservations equals what successful calls were charged.

API keys are ``dre_`` + 40 random URL-safe characters; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from dream.errors import AuthError, InsufficientCreditsError, ValidationError
from dream.server.services.db import Database, api_keys, customers, new_id, reservations, transactions

logger = logging.getLogger("dream.server.ledger")

KEY_PREFIX = "dre_"
MILS_PER_USD = 10_000


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def usd_to_mils(usd: float) -> int:
    """Dollars to whole mils, rounded half up (the ledger never holds fractions)."""
    from decimal import ROUND_HALF_UP, Decimal

    return int((Decimal(str(usd)) * MILS_PER_USD).to_integral_value(ROUND_HALF_UP))


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's customer, or the anonymous developer under --no-auth."""

    customer_id: str
    customer_name: str
    key_id: str | None  # None under --no-auth
    billed: bool  # False under --no-auth: nothing is reserved or charged
    limits: KeyLimits | None = None  # per-key overrides of the server's limits
    client: str | None = None  # under --no-auth: the caller's address, so each caller has its own limits

    @property
    def limiter_key(self) -> str:
        return self.key_id or f"anon:{self.client or self.customer_id}"


@dataclass(frozen=True)
class KeyLimits:
    """A key's own limits; None fields fall back to the server's settings."""

    rate_limit_rps: float | None = None
    burst: int | None = None
    max_concurrent: int | None = None

    @property
    def empty(self) -> bool:
        return self.rate_limit_rps is None and self.burst is None and self.max_concurrent is None


ANONYMOUS = Principal(customer_id="anonymous", customer_name="anonymous", key_id=None, billed=False)


@dataclass(frozen=True)
class IssuedKey:
    key: str  # shown once, never stored
    key_id: str
    customer_id: str
    customer_name: str
    balance_mils: int


@dataclass(frozen=True)
class Reservation:
    id: str
    customer_id: str
    amount_mils: int
    request_id: str


class Ledger:
    """Keys, balances, reservations and the transaction history, on one `Database`."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self.owner: str | None = None  # the server instance whose leases new reservations are

    # ----------------------------------------------------------------- customers and keys

    def _customer_by_name(self, conn: Connection, name: str) -> dict[str, Any] | None:
        row = conn.execute(select(customers).where(customers.c.name == name)).mappings().first()
        return dict(row) if row else None

    def create_key(self, customer_name: str, *, credits_mils: int = 0, limits: KeyLimits | None = None) -> IssuedKey:
        """A new key for `customer_name` (created if new), adding `credits_mils` to its balance."""
        name = customer_name.strip()
        if not name:
            raise ValueError("customer name must not be empty")
        if credits_mils < 0:
            raise ValueError(f"credits must be >= 0; got {credits_mils} mils")
        key = KEY_PREFIX + secrets.token_urlsafe(30)
        key_id = new_id("key")
        now = self._clock()
        with self.db.begin() as conn:
            cust = self._customer_by_name(conn, name)
            if cust is None:
                cust = {"id": new_id("cus"), "name": name, "balance_mils": 0, "created": now}
                conn.execute(customers.insert().values(**cust))
            conn.execute(
                api_keys.insert().values(
                    id=key_id, key_hash=hash_key(key), prefix=key[:12], customer_id=cust["id"], created=now, revoked=None,
                    rate_limit_rps=limits.rate_limit_rps if limits else None,
                    burst=limits.burst if limits else None,
                    max_concurrent=limits.max_concurrent if limits else None,
                )
            )
            balance = int(cust["balance_mils"])
            if credits_mils:
                balance = self._move(
                    conn, cust["id"], credits_mils, kind="credit", txn_id=new_id("grant"),
                    detail=f"credit · {credits_mils / MILS_PER_USD:.4f} USD via dream keys create",
                )
        logger.info("created key %s for customer %s (%s)", key_id, name, cust["id"])
        return IssuedKey(key=key, key_id=key_id, customer_id=cust["id"], customer_name=name, balance_mils=balance)

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key with its customer and balance, oldest first (no secrets)."""
        q = (
            select(
                api_keys.c.id, api_keys.c.prefix, api_keys.c.created, api_keys.c.revoked, api_keys.c.rate_limit_rps,
                api_keys.c.burst, api_keys.c.max_concurrent,
                customers.c.id.label("customer_id"), customers.c.name.label("customer"), customers.c.balance_mils,
            )
            .join(customers, customers.c.id == api_keys.c.customer_id)
            .order_by(api_keys.c.created)
        )
        with self.db.begin() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def revoke_key(self, ident: str) -> dict[str, Any]:
        """Revoke a key given its id (key_…), the full key (dre_…) or its listed prefix."""
        with self.db.begin() as conn:
            if ident.startswith(KEY_PREFIX) and len(ident) > 12:
                cond = api_keys.c.key_hash == hash_key(ident)
            elif ident.startswith(KEY_PREFIX):
                cond = api_keys.c.prefix == ident
            else:
                cond = api_keys.c.id == ident
            rows = conn.execute(select(api_keys).where(cond)).mappings().all()
            if not rows:
                raise KeyError(f"no key matches {ident!r}; see `dream keys list`")
            if len(rows) > 1:
                raise KeyError(f"{ident!r} matches {len(rows)} keys; pass the key id (key_…)")
            row = dict(rows[0])
            if row["revoked"] is None:
                row["revoked"] = self._clock()
                conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(revoked=row["revoked"]))
        row.pop("key_hash", None)
        return row

    def authenticate(self, key: str, *, then: Callable[[Connection, Principal], None] | None = None) -> Principal:
        """The principal of a bearer key; AuthError for an unknown or revoked key.

        `then(conn, principal)` runs in the same transaction once the key is valid (the
        rate limit: one transaction per request for both)."""
        if not key:
            raise AuthError("missing API key: send Authorization: Bearer dre_…", status_code=401)
        q = (
            select(
                api_keys.c.id, api_keys.c.revoked, api_keys.c.rate_limit_rps, api_keys.c.burst, api_keys.c.max_concurrent,
                customers.c.id.label("cid"), customers.c.name,
            )
            .join(customers, customers.c.id == api_keys.c.customer_id)
            .where(api_keys.c.key_hash == hash_key(key))
        )
        with self.db.begin() as conn:
            row = conn.execute(q).mappings().first()
            if row is None:
                raise AuthError("invalid API key", status_code=401)
            if row["revoked"] is not None:
                raise AuthError(f"API key {row['id']} has been revoked", status_code=403)
            limits = KeyLimits(row["rate_limit_rps"], row["burst"], row["max_concurrent"])
            principal = Principal(
                customer_id=row["cid"], customer_name=row["name"], key_id=row["id"], billed=True,
                limits=None if limits.empty else limits,
            )
            if then is not None:
                then(conn, principal)
        return principal

    def customer(self, customer_id: str) -> dict[str, Any]:
        with self.db.begin() as conn:
            row = conn.execute(select(customers).where(customers.c.id == customer_id)).mappings().first()
        if row is None:
            raise KeyError(customer_id)
        return dict(row)

    def customer_id_by_name(self, name: str) -> str | None:
        with self.db.begin() as conn:
            row = self._customer_by_name(conn, name)
        return row["id"] if row else None

    def balance_mils(self, customer_id: str) -> int:
        return int(self.customer(customer_id)["balance_mils"])

    # ----------------------------------------------------------------- money

    def _move(
        self,
        conn: Connection,
        customer_id: str,
        amount_mils: int,
        *,
        kind: str,
        txn_id: str,
        detail: str,
        reservation_id: str | None = None,
        external_id: str | None = None,
    ) -> int:
        """Add `amount_mils` (signed) to a balance and record it; returns the balance after."""
        conn.execute(
            update(customers).where(customers.c.id == customer_id).values(balance_mils=customers.c.balance_mils + amount_mils)
        )
        after = int(conn.execute(select(customers.c.balance_mils).where(customers.c.id == customer_id)).scalar_one())
        conn.execute(
            transactions.insert().values(
                id=txn_id, customer_id=customer_id, ts=self._clock(), kind=kind, amount_mils=amount_mils,
                balance_after_mils=after, detail=detail[:300], reservation_id=reservation_id, external_id=external_id,
            )
        )
        return after

    def reserve(
        self, customer_id: str, amount_mils: int, *, request_id: str, detail: str,
        first: Callable[[Connection], Any] | None = None,
    ) -> Reservation:
        """Take `amount_mils` now, or raise InsufficientCreditsError (402) with both figures.

        `first(conn)` runs at the start of the same transaction (taking a rollout slot), so
        what it does is undone when the credit is short."""
        if amount_mils < 0:
            raise ValueError(f"cannot reserve a negative amount ({amount_mils})")
        rsv = Reservation(id=new_id("rsv"), customer_id=customer_id, amount_mils=amount_mils, request_id=request_id)
        with self.db.begin() as conn:
            if first is not None:
                first(conn)
            taken = conn.execute(
                update(customers)
                .where(customers.c.id == customer_id, customers.c.balance_mils >= amount_mils)
                .values(balance_mils=customers.c.balance_mils - amount_mils)
            ).rowcount
            if taken != 1:
                balance = conn.execute(select(customers.c.balance_mils).where(customers.c.id == customer_id)).scalar()
                raise InsufficientCreditsError(
                    f"insufficient credits: this call costs {amount_mils} mils (${amount_mils / MILS_PER_USD:.4f}); "
                    f"the balance is {int(balance or 0)} mils. Top up with client.billing.topup(amount_usd=…) "
                    "or ask the operator for credits (dream keys create --credits).",
                    balance_mils=int(balance or 0),
                    requested_mils=amount_mils,
                )
            after = int(conn.execute(select(customers.c.balance_mils).where(customers.c.id == customer_id)).scalar_one())
            conn.execute(
                transactions.insert().values(
                    id=request_id, customer_id=customer_id, ts=self._clock(), kind="debit", amount_mils=-amount_mils,
                    balance_after_mils=after, detail=detail[:300], reservation_id=rsv.id, external_id=None,
                )
            )
            conn.execute(
                reservations.insert().values(
                    id=rsv.id, customer_id=customer_id, amount_mils=amount_mils, state="held", request_id=request_id,
                    created=self._clock(), detail=detail[:300], owner=self.owner,
                )
            )
        return rsv

    def settle(self, rsv: Reservation, *, also: Callable[[Connection], None] | None = None) -> None:
        """The call succeeded: the debit stands. `also` runs in the same transaction
        (storing the idempotent result), so a result is never kept without its charge."""
        with self.db.begin() as conn:
            n = conn.execute(
                update(reservations).where(reservations.c.id == rsv.id, reservations.c.state == "held").values(state="settled")
            ).rowcount
            if n != 1:
                raise RuntimeError(f"reservation {rsv.id} is not held; cannot settle it")
            if also is not None:
                also(conn)

    def refund(self, rsv: Reservation, *, reason: str) -> bool:
        """The call failed: give the mils back (once). Returns False if already settled/refunded."""
        with self.db.begin() as conn:
            n = conn.execute(
                update(reservations).where(reservations.c.id == rsv.id, reservations.c.state == "held").values(state="refunded")
            ).rowcount
            if n != 1:
                return False
            if rsv.amount_mils:
                self._move(
                    conn, rsv.customer_id, rsv.amount_mils, kind="refund", txn_id=rsv.request_id,
                    detail=f"refund · {reason}", reservation_id=rsv.id,
                )
        return True

    def credit(self, customer_id: str, amount_mils: int, *, txn_id: str, detail: str, external_id: str | None = None) -> int:
        """Add credits (a paid top-up, a grant). With `external_id`, applied at most once."""
        if amount_mils <= 0:
            raise ValueError(f"a credit must be positive; got {amount_mils}")
        try:
            with self.db.begin() as conn:
                exists = conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first()
                if exists is None:
                    raise ValidationError(f"unknown customer {customer_id!r}", status_code=422)
                return self._move(
                    conn, customer_id, amount_mils, kind="credit", txn_id=txn_id, detail=detail, external_id=external_id
                )
        except IntegrityError:
            logger.info("credit %s already applied (external id %s)", txn_id, external_id)
            return self.balance_mils(customer_id)

    def transactions(self, customer_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, in the wire shape of wire-protocol §12.3."""
        limit = max(1, min(int(limit), 200))
        q = (
            select(transactions)
            .where(transactions.c.customer_id == customer_id)
            .order_by(transactions.c.seq.desc())
            .limit(limit)
        )
        with self.db.begin() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            {
                "id": r["id"],
                "ts": r["ts"],
                "kind": r["kind"],
                "amount_mils": int(r["amount_mils"]),
                "amount_cents": round(int(r["amount_mils"]) / 100),
                "balance_after_mils": int(r["balance_after_mils"]),
                "balance_after_cents": int(r["balance_after_mils"]) // 100,
                "detail": r["detail"],
            }
            for r in rows
        ]

    def refund_held_reservations(self, *, reason: str = "server restarted before the call finished") -> int:
        """Refund every reservation still held (run at startup, before serving)."""
        with self.db.begin() as conn:
            rows = conn.execute(select(reservations).where(reservations.c.state == "held")).mappings().all()
        n = 0
        for r in rows:
            if self.refund(
                Reservation(id=r["id"], customer_id=r["customer_id"], amount_mils=int(r["amount_mils"]), request_id=r["request_id"]),
                reason=reason,
            ):
                n += 1
        if n:
            logger.warning("refunded %d reservation(s) left held by a previous run", n)
        return n

    def audit(self, customer_id: str) -> dict[str, int]:
        """Figures that must agree: balance, signed sum of transactions, settled charges."""
        with self.db.begin() as conn:
            balance = int(conn.execute(select(customers.c.balance_mils).where(customers.c.id == customer_id)).scalar_one())
            txn_sum = int(
                conn.execute(
                    select(func.coalesce(func.sum(transactions.c.amount_mils), 0)).where(transactions.c.customer_id == customer_id)
                ).scalar_one()
            )
            credits = int(
                conn.execute(
                    select(func.coalesce(func.sum(transactions.c.amount_mils), 0)).where(
                        transactions.c.customer_id == customer_id, transactions.c.kind == "credit"
                    )
                ).scalar_one()
            )
            settled = int(
                conn.execute(
                    select(func.coalesce(func.sum(reservations.c.amount_mils), 0)).where(
                        reservations.c.customer_id == customer_id, reservations.c.state == "settled"
                    )
                ).scalar_one()
            )
            held = int(
                conn.execute(
                    select(func.count()).select_from(reservations).where(
                        reservations.c.customer_id == customer_id, reservations.c.state == "held"
                    )
                ).scalar_one()
            )
        return {"balance_mils": balance, "transactions_sum_mils": txn_sum, "credits_mils": credits,
                "settled_mils": settled, "held_reservations": held}
