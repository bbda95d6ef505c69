"""The server's services on their own: ledger, idempotency, limiter, batcher, video URLs, codes."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pytest

from dream.errors import (
    AuthError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    RateLimitError,
)
from dream.server.services.batcher import BatchItem, DynamicBatcher, collate
from dream.server.services.codes import error_code
from dream.server.services.db import Database, api_keys
from dream.server.services.idempotency import IdempotencyKeyReused, IdempotencyStore, StoredResult
from dream.server.services.ledger import Ledger, usd_to_mils
from dream.server.services.limiter import Limiter
from dream.server.services.rollouts import BatchResult, SingleResult, UnknownModelError
from dream.server.services.videos import VideoStore


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(Database("sqlite://"))


# --------------------------------------------------------------------------- ledger


def test_keys_are_stored_only_as_sha256(ledger: Ledger) -> None:
    issued = ledger.create_key("acme", credits_mils=usd_to_mils(2.5))
    assert issued.key.startswith("dre_") and len(issued.key) == 44
    with ledger.db.begin() as conn:
        rows = conn.execute(api_keys.select()).mappings().all()
    assert [r["key_hash"] for r in rows] == [hashlib.sha256(issued.key.encode()).hexdigest()]
    assert issued.key not in repr([dict(r) for r in rows])
    assert ledger.authenticate(issued.key).customer_id == issued.customer_id
    assert issued.balance_mils == 25_000


def test_a_second_key_of_a_customer_shares_its_credits(ledger: Ledger) -> None:
    a = ledger.create_key("acme", credits_mils=100)
    b = ledger.create_key("acme", credits_mils=50)
    assert a.customer_id == b.customer_id and ledger.balance_mils(a.customer_id) == 150


@pytest.mark.parametrize("token", ["", "dre_unknown", "Bearer x"])
def test_unknown_keys_are_refused(ledger: Ledger, token: str) -> None:
    with pytest.raises(AuthError) as ei:
        ledger.authenticate(token)
    assert ei.value.status_code == 401


@pytest.mark.parametrize("by", ["id", "key", "prefix"])
def test_revoked_keys_get_403(ledger: Ledger, by: str) -> None:
    issued = ledger.create_key("acme")
    ident = {"id": issued.key_id, "key": issued.key, "prefix": issued.key[:12]}[by]
    assert ledger.revoke_key(ident)["revoked"] is not None
    with pytest.raises(AuthError) as ei:
        ledger.authenticate(issued.key)
    assert ei.value.status_code == 403 and "revoked" in ei.value.message


def test_reserve_settle_refund_keep_the_books_exact(ledger: Ledger) -> None:
    cid = ledger.create_key("acme", credits_mils=100).customer_id
    ok = ledger.reserve(cid, 30, request_id="req_1", detail="predict · x · 30 frames")
    bad = ledger.reserve(cid, 50, request_id="req_2", detail="predict · x · 50 frames")
    assert ledger.balance_mils(cid) == 20
    ledger.settle(ok)
    assert ledger.refund(bad, reason="engine failed") is True
    assert ledger.refund(bad, reason="twice") is False  # refunds happen once
    audit = ledger.audit(cid)
    assert audit == {"balance_mils": 70, "transactions_sum_mils": 70, "credits_mils": 100, "settled_mils": 30,
                     "held_reservations": 0}
    kinds = [t["kind"] for t in ledger.transactions(cid)]
    assert kinds == ["refund", "debit", "debit", "credit"]  # newest first; refund listed next to its debit
    with pytest.raises(RuntimeError):
        ledger.settle(bad)  # a refunded reservation cannot be settled


def test_insufficient_credit_raises_402_with_both_figures_and_takes_nothing(ledger: Ledger) -> None:
    cid = ledger.create_key("acme", credits_mils=10).customer_id
    with pytest.raises(InsufficientCreditsError) as ei:
        ledger.reserve(cid, 49, request_id="req_x", detail="predict")
    assert (ei.value.balance_mils, ei.value.requested_mils) == (10, 49)
    assert ledger.balance_mils(cid) == 10 and len(ledger.transactions(cid)) == 1


def test_held_reservations_are_refunded_after_a_crash(ledger: Ledger) -> None:
    cid = ledger.create_key("acme", credits_mils=100).customer_id
    ledger.reserve(cid, 40, request_id="req_1", detail="predict")
    assert ledger.refund_held_reservations() == 1
    assert ledger.audit(cid)["balance_mils"] == 100


def test_payment_credits_apply_once_per_event(ledger: Ledger) -> None:
    cid = ledger.create_key("acme").customer_id
    for _ in range(3):
        ledger.credit(cid, 50_000, txn_id="evt_1", detail="top-up", external_id="stripe:evt_1")
    assert ledger.balance_mils(cid) == 50_000


def test_usd_to_mils_rounds_half_up_without_float_drift() -> None:
    assert usd_to_mils(0.0001 * 49) == 49
    assert usd_to_mils(0.0245) == 245
    assert usd_to_mils(0.00005) == 1


# --------------------------------------------------------------------------- idempotency


def test_idempotency_store_claims_replays_and_refuses_reuse(ledger: Ledger) -> None:
    clock = FakeClock()
    store = IdempotencyStore(ledger.db, clock=clock)
    assert store.begin("cus_1", "k1", "fp-a", 60) == ("claimed", None)
    assert store.begin("cus_1", "k1", "fp-a", 60) == ("pending", None)
    assert store.begin("cus_2", "k1", "fp-a", 60) == ("claimed", None)  # keys are per customer
    store.complete("cus_1", "k1", StoredResult({"x": 1}, b"mp4"))
    state, stored = store.begin("cus_1", "k1", "fp-a", 60)
    assert state == "done" and stored == StoredResult({"x": 1}, b"mp4")
    with pytest.raises(IdempotencyKeyReused):
        store.begin("cus_1", "k1", "fp-b", 60)
    clock.advance(61)  # expired: the key may run again
    assert store.begin("cus_1", "k1", "fp-b", 60) == ("claimed", None)


def test_an_abandoned_claim_can_be_retried(ledger: Ledger) -> None:
    store = IdempotencyStore(ledger.db)
    store.begin("c", "k", "fp", 60)
    store.abandon("c", "k")
    assert store.begin("c", "k", "fp", 60) == ("claimed", None)


# --------------------------------------------------------------------------- limiter


def test_rate_limit_refuses_with_retry_after_and_refills_with_time(ledger: Ledger) -> None:
    clock = FakeClock()
    lim = Limiter(ledger.db, rate=2.0, burst=3, max_concurrent=0, clock=clock)
    for _ in range(3):
        lim.check_request("k")
    with pytest.raises(RateLimitError) as ei:
        lim.check_request("k")
    assert ei.value.retry_after == 0.5
    lim.check_request("other")  # per key
    clock.advance(0.5)
    lim.check_request("k")
    with pytest.raises(RateLimitError):
        lim.check_request("k")
    clock.advance(10)
    assert lim.prune() == 2  # whole bursts and nothing in flight: nothing to remember


def test_two_limiters_on_one_database_share_a_keys_rate(ledger: Ledger) -> None:
    clock = FakeClock()
    a, b = (Limiter(ledger.db, rate=1.0, burst=2, max_concurrent=0, clock=clock) for _ in range(2))
    a.check_request("k")
    b.check_request("k")
    with pytest.raises(RateLimitError) as ei:
        a.check_request("k")
    assert ei.value.retry_after == 1.0
    with pytest.raises(RateLimitError):
        b.check_request("k")


def test_concurrent_rollout_cap_per_key(ledger: Ledger) -> None:
    lim = Limiter(ledger.db, rate=0, burst=1, max_concurrent=2, concurrency_retry_after_s=1.5, clock=FakeClock())
    other = Limiter(ledger.db, rate=0, burst=1, max_concurrent=2, concurrency_retry_after_s=1.5, clock=FakeClock())
    with lim.rollout_slot("k"), other.rollout_slot("k"):  # two replicas, one slot each
        with pytest.raises(RateLimitError) as ei, lim.rollout_slot("k"):
            pass
        assert ei.value.retry_after == 1.5
        with lim.rollout_slot("other"):
            pass
        assert lim.active("k") == 2
    assert lim.active("k") == 0
    with lim.rollout_slot("k"):
        assert other.active("k") == 1


# --------------------------------------------------------------------------- batcher


def _item(spec: str = "s", T: int = 4, seed: int = 0, num_steps: int | None = None) -> BatchItem:
    return BatchItem(spec, np.zeros((4, 4, 3), np.uint8), np.full((T, 2), seed, np.float32), seed, num_steps, None)


def test_collate_groups_by_spec_length_and_sampler_settings() -> None:
    items = [_item(seed=0), _item(T=8), _item(seed=1), _item(spec="t"), _item(num_steps=3), _item(seed=2)]
    groups = collate(items, max_batch=2)
    assert [[items.index(i) for i in g] for g in groups] == [[0, 2], [5], [1], [3], [4]]


class _FakeResult:
    def __init__(self, items: list[BatchItem]) -> None:
        self.frames = np.stack([np.full((it.actions.shape[0] + 1, 1, 1, 3), it.seed, np.uint8) for it in items])
        self.wall_ms = 1.0


def test_batcher_fuses_concurrent_requests_into_one_call() -> None:
    calls: list[int] = []

    def run(items: list[BatchItem]) -> _FakeResult:
        calls.append(len(items))
        return _FakeResult(items)

    async def main() -> list[int]:
        # A long window that never elapses: the batch closes because it is full.
        b = DynamicBatcher(run, window_s=30.0, max_batch=4)
        results = await asyncio.gather(*(b.submit(_item(seed=s)) for s in range(4)))
        return [int(r.frames[0, 0, 0, 0]) for r in results] + [r.fused for r in results]

    out = asyncio.run(main())
    assert calls == [4]
    assert out == [0, 1, 2, 3, 4, 4, 4, 4]  # each caller gets its own row


def test_batcher_off_runs_each_request_alone() -> None:
    calls: list[int] = []

    async def main() -> None:
        b = DynamicBatcher(lambda items: (calls.append(len(items)), _FakeResult(items))[1], window_s=0, max_batch=8)
        await asyncio.gather(*(b.submit(_item(seed=s)) for s in range(3)))

    asyncio.run(main())
    assert calls == [1, 1, 1]


def test_a_failing_fused_batch_is_retried_one_by_one() -> None:
    def run(items: list[BatchItem]) -> _FakeResult:
        if any(it.seed == 2 for it in items):
            raise RuntimeError("bad row")
        return _FakeResult(items)

    async def main() -> list[object]:
        b = DynamicBatcher(run, window_s=30.0, max_batch=3)
        return await asyncio.gather(*(b.submit(_item(seed=s)) for s in range(3)), return_exceptions=True)

    out = asyncio.run(main())
    assert [type(o).__name__ for o in out] == ["ItemResult", "ItemResult", "RuntimeError"]


# --------------------------------------------------------------------------- videos


def test_signed_video_urls_verify_and_expire(tmp_path) -> None:
    clock = FakeClock(10_000)
    store = VideoStore(tmp_path, secret=b"k", ttl_s=60, clock=clock)
    vid = "vid_" + "a" * 32
    store.put(vid, b"mp4 bytes")
    path, expires = store.signed_path(vid)
    sig = path.split("sig=")[1]
    store.verify(vid, expires, sig)
    assert store.read(vid) == b"mp4 bytes"
    with pytest.raises(AuthError):
        store.verify(vid, expires + 1, sig)  # tampered expiry
    with pytest.raises(AuthError):
        store.verify("vid_" + "b" * 32, expires, sig)  # another video
    clock.advance(61)
    with pytest.raises(AuthError, match="expired"):
        store.verify(vid, expires, sig)
    with pytest.raises(ModelNotFoundError):
        store.read("../../etc/passwd")


def test_error_codes_name_the_class() -> None:
    assert error_code(InputValidationError("x")) == "input_validation"
    assert error_code(UnknownModelError("x")) == "model_not_found"
    assert error_code(InsufficientCreditsError("x")) == "insufficient_credits"
    assert error_code(RateLimitError("x")) == "rate_limit"


def test_results_round_trip_through_their_idempotency_record_json() -> None:
    import dataclasses
    import json

    single = SingleResult("rollout_1", "req_1", "pusht-96", 1_700_000_000, 49, (96, 96), 207.5, 49, 3, "acme", "vid_1",
                          fused=4, mp4=b"mp4")
    batch = BatchResult("batch_1", "pusht-96", 8, 49, (96, 96), 1037.0, 392, 0, "acme", tar=b"tar")
    for result, body in ((single, b"mp4"), (batch, b"tar")):
        meta = json.loads(json.dumps(result.meta()))
        assert meta["kind"] == type(result).KIND and "replayed" not in meta and not {"mp4", "tar"} & set(meta)
        again = type(result).from_stored(StoredResult(meta, body))
        assert again == dataclasses.replace(result, replayed=True) and again.cost_usd == result.cost_usd
    older = json.loads(json.dumps(single.meta()))
    del older["fused"]  # records written before `fused` existed
    assert SingleResult.from_stored(StoredResult(older, b"mp4")).fused == 1


def test_batcher_runs_specs_that_may_not_fuse_alone() -> None:
    calls: list[int] = []

    def run(items: list[BatchItem]) -> _FakeResult:
        calls.append(len(items))
        return _FakeResult(items)

    async def main() -> None:
        b = DynamicBatcher(run, window_s=30.0, max_batch=3, fusable=lambda slug: False)
        await asyncio.gather(*(b.submit(_item(seed=s)) for s in range(3)))

    asyncio.run(main())
    assert calls == [1, 1, 1]
