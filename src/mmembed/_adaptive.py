"""Adaptive concurrency: find a self-hosted server's capacity from its answers, and keep it just saturated.

A self-hosted embedding server (a GPU behind an inference server the user runs) publishes no rate limit: its
limit is the GPU. One request at a time leaves it idle between requests; a flood fills its queue and it answers
503 (or 429). :class:`AdaptiveLimiter` keeps as many requests in flight as the server can take without queueing
much, by AIMD on the two signals the server gives:

* **latency**: the answers' smoothed time is compared with the *floor*, the fastest recent answer of a request
  of the same size class (a windowed minimum, so a faster or slower server is relearnt). While answers come
  within ``(1 + tolerance)`` times the floor, the server is not yet queueing: the limit grows (by one per answer
  at first, which doubles it every round trip, then by one per round trip). Beyond that the limit holds; beyond
  twice that (a queue building up) it shrinks by a quarter;
* **refusals**: a 503 or 429 (the server's queue is full), a timeout or a dropped connection halves the limit.

A decrease happens at most once per congestion episode: answers to requests that started before the last
decrease say nothing new. The limit stays within ``[1, ceiling - reserve]``; the ``reserve`` slots are for
*priority* requests (a search query while a bulk ingest runs, marked with :meth:`AdaptiveLimiter.priority`),
which also go before any waiting bulk request, so a query never waits behind an ingest's backlog.

It is a :class:`~mmembed.transport.Limiter`: the transport calls :meth:`~AdaptiveLimiter.acquire` before each
attempt, :meth:`~AdaptiveLimiter.release` after it, :meth:`~AdaptiveLimiter.observe` with the attempt's status
and duration, and :meth:`~AdaptiveLimiter.pause` on a 429. A self-hosted server's 429 means a full queue, not a
spent quota: fewer requests in flight is the cure, so a pause is held only as long as the server needs to serve
about one request (unless ``honour_pauses``, for a hosted API whose ``Retry-After`` is a quota's).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["AdaptiveLimiter"]

CONGESTION = frozenset({429, 503})
SIZE_CLASSES = 12  # requests of 1, 2-3, 4-7, ... items each have their own latency floor
SMOOTHING = 0.25  # weight of the newest answer in the smoothed latency


class _WindowedMin:
    """The minimum of the values seen over the last one to two ``window`` s (two buckets, rotated)."""

    def __init__(self, window: float, now: float) -> None:
        self.window = window
        self.current = math.inf
        self.previous = math.inf
        self.rotated = now

    def add(self, value: float, now: float) -> None:
        if now - self.rotated >= self.window:
            self.previous = self.current if now - self.rotated < 2 * self.window else math.inf
            self.current = math.inf
            self.rotated = now
        self.current = min(self.current, value)

    @property
    def value(self) -> float:
        return min(self.current, self.previous)


class AdaptiveLimiter:
    """Requests in flight at once, grown while the server answers at its floor latency, cut when it refuses.

    ``ceiling``: the most requests ever in flight (the client's worker threads); ``initial``: the limit to start
    from (a few: any server queues that many, and one at a time would idle it between answers at the start);
    ``reserve``: slots only priority requests may use; ``tolerance``: how far above its floor an answer's
    latency may be and still count as "not queueing"; ``floor_window``: seconds a latency floor is remembered.
    ``clock`` is for tests. Thread-safe; one instance serves one client.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        initial: int = 4,
        reserve: int = 1,
        tolerance: float = 1.0,
        floor_window: float = 30.0,
        honour_pauses: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be at least 1, got {ceiling}")
        self.ceiling = ceiling
        self.reserve = min(max(0, reserve), ceiling - 1)
        self.most = ceiling - self.reserve  # the bulk limit's top
        self.limit = float(min(max(1, initial), self.most))
        self.tolerance = tolerance
        self.floor_window = floor_window
        self.honour_pauses = honour_pauses
        self._clock = clock
        self._slow_start = True
        self._in_flight = 0
        self._priority_waiting = 0
        self._held_until = 0.0
        self._last_decrease = -math.inf
        self._floors: dict[int, _WindowedMin] = {}
        self._smooth: dict[int, float] = {}
        self._cond = threading.Condition()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"AdaptiveLimiter(limit={self.limit:.1f}, ceiling={self.ceiling}, in_flight={self._in_flight})"

    # -- what callers mark --------------------------------------------------------------------------------
    @contextmanager
    def priority(self, urgent: bool = True, size: int | None = None) -> Iterator[None]:
        """Requests made on this thread inside the block: priority ones (``urgent``), of ``size`` items each."""
        previous = getattr(self._local, "mark", (False, None))
        self._local.mark = (urgent, size)
        try:
            yield
        finally:
            self._local.mark = previous

    # -- the Limiter protocol -------------------------------------------------------------------------------
    def acquire(self) -> float:
        """Block until this thread's request may start (a slot under the limit); returns the seconds waited."""
        urgent = getattr(self._local, "mark", (False, None))[0]
        started = self._clock()
        with self._cond:
            self._priority_waiting += urgent
            try:
                while True:
                    hold = self._held_until - self._clock()
                    if hold <= 0 and self._admits(urgent):
                        break
                    self._cond.wait(hold if hold > 0 else None)
            finally:
                self._priority_waiting -= urgent
            self._in_flight += 1
        return self._clock() - started

    def _admits(self, urgent: bool) -> bool:
        if urgent:
            return self._in_flight < int(self.limit) + self.reserve
        return self._in_flight < int(self.limit) and not self._priority_waiting

    def release(self) -> None:
        """The request this thread started has ended (answered or failed): its slot is free."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """Hold new requests back after a 429: ``seconds`` if honouring pauses, else about one service time."""
        with self._cond:
            if not self.honour_pauses:
                floors = [f.value for f in self._floors.values() if math.isfinite(f.value)]
                seconds = min(seconds, max(floors, default=0.05))
            self._held_until = max(self._held_until, self._clock() + seconds)

    def observe(self, status: int | None, seconds: float) -> None:
        """Learn from one attempt: its HTTP status (None: no answer) and how long it took."""
        now = self._clock()
        started = now - seconds
        with self._cond:
            if status is None or status in CONGESTION:
                self._decrease(started, now, 0.5)
            elif 200 <= status < 300:
                self._answered(seconds, now, started)
            self._cond.notify_all()

    # -- AIMD -------------------------------------------------------------------------------------------
    def _answered(self, seconds: float, now: float, started: float) -> None:
        size = getattr(self._local, "mark", (False, None))[1] or 1
        key = min(SIZE_CLASSES, int(size).bit_length())
        floor = self._floors.setdefault(key, _WindowedMin(self.floor_window, now))
        floor.add(seconds, now)
        # A smoothed latency: one answer delayed by the client's own scheduling is not a queue at the server.
        smooth = self._smooth[key] = SMOOTHING * seconds + (1 - SMOOTHING) * self._smooth.get(key, seconds)
        target = floor.value * (1.0 + self.tolerance)
        if smooth <= target:
            if 2 * self._in_flight >= int(self.limit):  # the limit is in use, not just allowed
                self.limit = min(float(self.most), self.limit + (1.0 if self._slow_start else 1.0 / self.limit))
        elif smooth > 2 * target:
            self._decrease(started, now, 0.75)
        else:
            self._slow_start = False

    def _decrease(self, started: float, now: float, factor: float) -> None:
        self._slow_start = False
        if started < self._last_decrease:
            return  # in flight before the last cut: the same episode
        self.limit = max(1.0, self.limit * factor)
        self._last_decrease = now

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight
