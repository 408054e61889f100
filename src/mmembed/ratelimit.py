"""One rate limiter for every window: requests, inputs or images, in a client's threads or in a Ray actor.

A :class:`RateLimiter` admits a *cost* (one request, or a request's inputs or images) when two rules allow it:

* **the window**: at most ``quota`` units in any ``window`` seconds, counted by a sliding-window log (so the limit
  holds over *every* window, not only aligned ones). A unit holds its place in the log from its start until one
  window after it *ended* (:meth:`RateLimiter.release`): the server saw it arrive somewhere in between, so no
  network delay can make the server count more than the quota in one of its windows. ``window=None``: no window;
* **the pace**: a bucket of ``burst`` units refilled at the average rate (GCRA, the bucket's virtual-time form),
  so ``burst`` units after an idle spell go out at once and a longer run settles at the average rate instead of
  spending the whole window's quota in its first second. ``paced=False``: no pace.

:meth:`~RateLimiter.pause` holds every holder back (after a 429) and restarts at the average rate. The same
arithmetic answers three callers: :meth:`~RateLimiter.acquire` blocks a client thread, :meth:`~RateLimiter.take`
answers a server at once (the emulator: 0, or how long until it would admit), :meth:`~RateLimiter.book` grants
start times ahead (the Ray actor leases them to processes, which add them to their own clocks).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``per_minute`` units a minute, counted over ``window`` seconds and paced with bursts of ``burst``.

    Thread-safe: one instance is shared by every worker of a client. ``clock`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        *,
        window: float | None = 60.0,
        burst: int | None = None,
        paced: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if window is not None and window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        self.rate = per_minute / 60.0 if per_minute else None
        self.window = float(window) if window is not None else None
        # The quota per window; rounded first so 500/min over 60 s is 500, not 499 from float error.
        self.quota = max(1, math.floor(round(self.rate * window, 6))) if self.rate and window else None
        cap = self.quota or max(1, math.floor(self.rate or 1))  # without a window, a second's worth at most
        # Without a rate nothing is paced; without a burst the whole window's quota may go at once.
        self.burst = max(1, min(burst or cap, cap))
        self.interval = 1.0 / self.rate if self.rate and paced else 0.0
        self._clock, self._sleep = clock, sleep
        self._log: list[tuple[float, int]] = []  # (start, cost), sorted by start
        self._used = 0  # the sum of the costs in the log
        self._tat = clock()  # the pace's theoretical arrival time of the next unit
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._mine = threading.local()  # the log entry of this thread's last admission, for release()

    def __repr__(self) -> str:
        window = f"{self.window:g}" if self.window is not None else None
        return f"RateLimiter(quota={self.quota}, window={window}, burst={self.burst})"

    def acquire(self, cost: int = 1) -> float:
        """Block until ``cost`` units may start; returns the seconds waited (0.0 when they went at once)."""
        waited = 0.0
        while True:
            delay = self.take(cost)
            if delay <= 0:
                return waited
            self._sleep(delay)
            waited += delay

    def take(self, cost: int = 1) -> float:
        """Admit ``cost`` units now and return 0.0, or admit nothing and return the seconds until they could go."""
        with self._lock:
            now = self._clock()
            start = self._earliest(now, cost)
            if start > now:
                return start - now
            self._record(now, cost)
            return 0.0

    def book(self, count: int, horizon: float) -> list[float]:
        """Start times for ``count`` single units (at least one), those after the first within ``horizon`` s.

        Returned as offsets from now: whoever holds one adds it to its own clock (no common clock needed).
        """
        offsets: list[float] = []
        with self._lock:
            now = self._clock()
            for _ in range(max(1, count)):
                start = self._earliest(now, 1)
                if offsets and start - now > horizon:
                    break
                self._record(start, 1)
                offsets.append(start - now)
        return offsets

    def release(self) -> None:
        """The work this thread last acquired for has ended: it counts for one more window from now."""
        entry = getattr(self._mine, "entry", None)
        if entry is None or self.quota is None:
            return
        self._mine.entry = None
        with self._lock:
            index = bisect.bisect_left(self._log, entry)
            if index < len(self._log) and self._log[index] == entry:
                del self._log[index]  # any entry alike will do
                bisect.insort(self._log, (max(self._clock(), entry[0]), entry[1]))
            # else it outlived a whole window and was dropped already

    def pause(self, seconds: float) -> None:
        """Hold every holder back for ``seconds`` (after a 429), without shortening a longer pause."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            # Restart at the average rate: the bucket is empty when the pause ends, no burst right after a 429.
            self._tat = max(self._tat, self._paused_until + self.burst * self.interval)

    # -- under the lock ---------------------------------------------------------------------------------
    def _earliest(self, now: float, cost: int) -> float:
        """The first time at or after ``now`` when ``cost`` units may start."""
        start = max(now, self._paused_until)
        if self.rate is None:
            return start
        if self.interval:  # a cost over the burst waits for a full bucket, no longer
            start = max(start, self._tat - (self.burst - min(cost, self.burst)) * self.interval)
        if self.quota is not None:  # a cost over the quota waits for an empty window, no longer
            start = max(start, self._window_start(now, min(cost, self.quota)))
        return start

    def _window_start(self, now: float, cost: int) -> float:
        log, window = self._log, self.window or 0.0
        cost = max(1, cost)
        drop = 0
        while drop < len(log) and log[drop][0] <= now - window:
            self._used -= log[drop][1]
            drop += 1
        del log[:drop]
        free = (self.quota or 0) - self._used
        start = now
        for stamp, used in log:  # until enough of the oldest entries have left the window
            if free >= cost:
                break
            free += used
            start = stamp + window
        return start

    def _record(self, start: float, cost: int) -> None:
        if self.rate is None:
            return
        if self.interval:
            self._tat = max(self._tat, start) + min(cost, self.burst) * self.interval
        if self.quota is not None:
            entry = (start, min(cost, self.quota))
            bisect.insort(self._log, entry)
            self._used += entry[1]
            self._mine.entry = entry
