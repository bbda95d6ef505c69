"""Fair turns on the one engine thread: customers are served round-robin.

Every piece of engine work (a fused batch of short rollouts, or one chunk of a long
rollout) runs inside ``async with scheduler.turn(customer)``. One turn is granted at a
time; when it ends, the next goes to the customer after the last one served, in a ring
of the customers waiting, each customer's own requests in arrival order. A long rollout
asks for a new turn for every chunk, so another customer's request waits for one chunk,
not for the whole rollout.

No HTTP, no engine: a ring of asyncio futures (tested without a model).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairScheduler:
    """Grants one turn at a time, round-robin over the customers waiting."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()  # ring order
        self._busy = False
        self.granted: list[str] = []  # customers in the order their turns began (the last 1000)

    @property
    def busy(self) -> bool:
        return self._busy

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @asynccontextmanager
    async def turn(self, customer: str) -> AsyncIterator[None]:
        """Wait for this customer's next turn, hold it for the block, then pass it on."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(customer, deque()).append(fut)
        self._grant()
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():  # granted as we were cancelled: pass it on
                self._release()
            else:
                self._forget(customer, fut)
            raise
        try:
            yield
        finally:
            self._release()

    def _forget(self, customer: str, fut: asyncio.Future[None]) -> None:
        queue = self._waiting.get(customer)
        if queue is not None and fut in queue:
            queue.remove(fut)
            if not queue:
                del self._waiting[customer]

    def _release(self) -> None:
        self._busy = False
        self._grant()

    def _grant(self) -> None:
        if self._busy or not self._waiting:
            return
        customer, queue = next(iter(self._waiting.items()))
        fut = queue.popleft()
        del self._waiting[customer]
        if queue:  # the rest of this customer's requests go to the back of the ring
            self._waiting[customer] = queue
        self._busy = True
        self.granted.append(customer)
        del self.granted[:-1000]
        fut.set_result(None)
