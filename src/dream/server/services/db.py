"""The server's database: one SQLAlchemy engine and the tables every service shares.

SQLite file by default (DESIGN decision 8), any SQLAlchemy URL otherwise (PostgreSQL
when several replicas share one ledger). Money moves only through conditional UPDATEs
inside one transaction, so two replicas can never spend the same mils twice.

SQLite allows one writer at a time; a process-wide lock serialises our transactions so
threads wait on the lock instead of failing with "database is locked", and WAL mode
lets another process (``dream keys create`` while the server runs) read and write too.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    Column("id", String(40), primary_key=True),  # cus_<hex>
    Column("name", String(200), nullable=False, unique=True),
    Column("balance_mils", BigInteger, nullable=False),
    Column("created", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),  # key_<hex>
    Column("key_hash", String(64), nullable=False, unique=True),  # SHA-256 hex of the dre_… key
    Column("prefix", String(16), nullable=False),  # first characters, to recognise a key in lists
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("created", Float, nullable=False),
    Column("revoked", Float, nullable=True),
    # Per-key limits; NULL = the server's defaults (--rate-limit, --burst, --max-concurrent).
    Column("rate_limit_rps", Float, nullable=True),
    Column("burst", Integer, nullable=True),
    Column("max_concurrent", Integer, nullable=True),
)

transactions = Table(
    "transactions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(80), nullable=False),  # request id (debit/refund) or payment event id (credit)
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # debit | refund | credit
    Column("amount_mils", BigInteger, nullable=False),  # signed: debits are negative
    Column("balance_after_mils", BigInteger, nullable=False),
    Column("detail", String(300), nullable=False),
    Column("reservation_id", String(40), nullable=True),
    Column("external_id", String(200), nullable=True, unique=True),  # dedupes payment webhooks
    Index("ix_transactions_customer_seq", "customer_id", "seq"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(40), primary_key=True),  # rsv_<hex>
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("amount_mils", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # held | settled | refunded
    Column("request_id", String(80), nullable=False),
    Column("created", Float, nullable=False),
    Column("detail", String(300), nullable=False),
    Column("owner", String(40), nullable=True),  # server instance holding it (leases); NULL: older servers
    Index("ix_reservations_state", "state"),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("scope", String(60), primary_key=True),  # customer id
    Column("key", String(300), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(12), nullable=False),  # pending | done
    Column("owner", String(40), nullable=False),  # process that claimed it
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("ttl_s", Float, nullable=False),  # how long a finished record is kept
    Column("meta", Text, nullable=True),  # JSON of the stored result
    Column("body", LargeBinary, nullable=True),  # mp4 / tar / JSON bytes of the stored result
    Index("ix_idempotency_expires", "expires"),
)

rollout_records = Table(
    "rollout_records",
    metadata,
    Column("id", String(60), primary_key=True),  # rollout_<hex>
    Column("customer_id", String(40), nullable=False),
    Column("status", String(12), nullable=False),  # queued | running | succeeded | failed
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("envelope", Text, nullable=False),  # JSON (wire-protocol §7.2 + status)
    Column("video_id", String(60), nullable=True),
    Column("error", Text, nullable=True),
    Column("owner", String(40), nullable=True),  # server instance running a queued/running async rollout
    # --public-url of the replica whose data folder holds the video; NULL: any (a shared folder)
    Column("video_base", String(300), nullable=True),
)

# Server instances sharing this database: each refreshes its heartbeat; what an instance
# holds (reservations, pending idempotency records, async rollouts) is a lease that any
# other instance releases once the heartbeat is older than the lease.
instances = Table(
    "server_instances",
    metadata,
    Column("id", String(40), primary_key=True),  # srv_<hex>
    Column("started", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("info", String(200), nullable=False),  # host and pid, for operators
    # What replicas must agree on, compared when one starts (`services.leases.ReplicaConfig`).
    Column("secret_check", String(64), nullable=True),  # a one-way check value of --url-secret
    Column("data_dir_id", String(40), nullable=True),  # the id file in --data-dir (the same when shared)
    Column("public_url", String(300), nullable=True),  # --public-url; NULL: from each request's Host
)

# Per-key limits shared by every replica on this ledger (`services.limiter`): one row per
# limiter key with the request rate's state (GCRA: the time at which the key's burst is
# whole again) and the count of its rollouts in flight on all replicas.
limit_keys = Table(
    "limit_keys",
    metadata,
    Column("key", String(120), primary_key=True),  # key_<hex>, anon:<address>, ip:<address>
    Column("tat", Float, nullable=False),  # GCRA theoretical arrival time, epoch seconds
    Column("active", Integer, nullable=False),  # rollouts in flight (the sum of its rollout_slots)
)

# One row per rollout in flight: a lease of the replica running it, released by any replica
# once that one's heartbeat expires, so a killed replica's slots do not block the key.
rollout_slots = Table(
    "rollout_slots",
    metadata,
    Column("id", String(40), primary_key=True),  # slot_<hex>
    Column("key", String(120), nullable=False),
    Column("owner", String(40), nullable=False),  # server instance
    Column("created", Float, nullable=False),
    Index("ix_rollout_slots_owner", "owner"),
)

# Columns added after a table first shipped: (table, column DDL), added when missing.
_ADDED_COLUMNS = [
    ("reservations", "owner", "VARCHAR(40)"),
    ("rollout_records", "owner", "VARCHAR(40)"),
    ("server_instances", "secret_check", "VARCHAR(64)"),
    ("server_instances", "data_dir_id", "VARCHAR(40)"),
    ("server_instances", "public_url", "VARCHAR(300)"),
    ("rollout_records", "video_base", "VARCHAR(300)"),
]


def new_id(prefix: str) -> str:
    """``<prefix>_<32 hex>``: the id format of requests, rollouts, sessions, customers."""
    return f"{prefix}_{uuid.uuid4().hex}"


class Database:
    """An SQLAlchemy engine plus the transaction helper every service uses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool  # one shared in-memory database
        if self.is_sqlite and ":memory:" not in url and url != "sqlite://":
            _create_private(url)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite and ":memory:" not in url and url != "sqlite://":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.RLock() if self.is_sqlite else None
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a ledger made by an older version up to date (new nullable columns only)."""
        from sqlalchemy import inspect, text
        from sqlalchemy.exc import DBAPIError

        for table, column, ddl in _ADDED_COLUMNS:
            if column in {c["name"] for c in inspect(self.engine).get_columns(table)}:
                continue
            try:
                with self.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            except DBAPIError:  # another replica added it meanwhile
                if column not in {c["name"] for c in inspect(self.engine).get_columns(table)}:
                    raise

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: commits on success, rolls back on any exception."""
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _create_private(url: str) -> None:
    """Create a new SQLite ledger file readable by its owner only (0600): it holds key hashes
    and every customer's money. SQLite gives its -wal and -shm files the same mode."""
    import contextlib
    import os

    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if not path or os.path.exists(path):
        return
    with contextlib.suppress(FileExistsError):  # created meanwhile by another process
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
