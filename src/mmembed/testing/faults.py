"""Faults the emulator can inject: error statuses, resets, hangs, broken bodies — queued or at random.

>>> Fault.parse("503")
Fault(kind='status', status=503, retry_after=None, delay=None)
>>> Fault.parse("reset").kind
'reset'
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "Fault", "FaultPlan"]

FAULT_KINDS = ("status", "reset", "hang", "trickle", "malformed", "html", "wrong_count")
DEFAULT_HANG = 30.0
DEFAULT_TRICKLE = 0.5  # seconds between the pieces of a trickled answer


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request.

    ``kind`` is one of:

    * ``"status"`` — answer ``status`` (default 500) in the provider's error JSON; ``retry_after`` adds a
      ``Retry-After`` header (seconds, or an HTTP date string);
    * ``"reset"`` — close the socket without answering (SO_LINGER 0: the client sees a connection reset);
    * ``"hang"`` — wait ``delay`` seconds (default 30) before answering, so the client's timeout fires;
    * ``"trickle"`` — a correct 200 whose body comes a few bytes at a time, ``delay`` seconds (default 0.5)
      apart: every read succeeds, so only a deadline on the whole attempt ends it;
    * ``"malformed"`` — 200 with a truncated JSON body;
    * ``"html"`` — 502 (or ``status``) with an HTML page, as a proxy in front of the API would send;
    * ``"wrong_count"`` — 200 with one embedding fewer than the request asked for.
    """

    kind: str
    status: int | None = None
    retry_after: int | float | str | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status (100-599), got {self.status}")
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    @classmethod
    def parse(cls, spec: Fault | str) -> Fault:
        """A Fault from itself or a shorthand: a status code (``"429"``) or a kind name (``"reset"``)."""
        if isinstance(spec, Fault):
            return spec
        text = spec.strip().lower()
        if text.isdigit():
            return cls("status", status=int(text))
        return cls(text)

    @property
    def answer_status(self) -> int:
        """The status the client receives for ``status`` and ``html`` faults."""
        if self.status is not None:
            return self.status
        return 502 if self.kind == "html" else 500

    @property
    def hang_seconds(self) -> float:
        return DEFAULT_HANG if self.delay is None else self.delay

    @property
    def trickle_seconds(self) -> float:
        return DEFAULT_TRICKLE if self.delay is None else self.delay


class FaultPlan:
    """Faults waiting for requests: a FIFO queue (optionally per provider), then a seeded random draw."""

    def __init__(self, rate: float = 0.0, kinds: tuple[Fault, ...] = (), seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {rate}")
        if rate > 0 and not kinds:
            raise ValueError("fault_rate > 0 needs fault_kinds to draw from")
        self._rate, self._kinds = rate, kinds
        self._random = random.Random(seed)
        self._queue: deque[tuple[Fault, str | None]] = deque()
        self._lock = threading.Lock()

    def inject(self, fault: Fault, times: int, provider: str | None) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        with self._lock:
            self._queue.extend([(fault, provider)] * times)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def next(self, provider: str) -> Fault | None:
        """The fault for the next request to ``provider``, or None to behave."""
        with self._lock:
            for i, (fault, target) in enumerate(self._queue):
                if target is None or target == provider:
                    del self._queue[i]
                    return fault
            if self._rate > 0 and self._random.random() < self._rate:
                return self._random.choice(self._kinds)
        return None
