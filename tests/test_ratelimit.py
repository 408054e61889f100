"""The one rate limiter: windows of any cost, the pace, pauses, and its three callers (block, answer, book)."""

from __future__ import annotations

import numpy as np
import pytest

from mmembed.ratelimit import RateLimiter
from test_transport import FakeClock


def test_a_window_of_inputs_counts_costs_not_calls() -> None:
    clock = FakeClock()
    inputs = RateLimiter(10, window=60, paced=False, clock=clock, sleep=clock.sleep)  # 10 inputs a minute
    assert inputs.quota == 10
    assert inputs.acquire(6) == 0.0
    clock.now += 20
    assert inputs.acquire(4) == 0.0  # 10 in the window: full
    assert inputs.acquire(3) == pytest.approx(40.0)  # until the 6 of the first call leave it (60 s after them)
    assert inputs.acquire(50) == pytest.approx(60.0)  # more than the quota waits for an empty window, not forever


def test_take_answers_at_once_and_admits_nothing_when_refused() -> None:
    clock = FakeClock()
    server = RateLimiter(120, window=1, paced=False, clock=clock, sleep=clock.sleep)  # 2 in any second
    assert [server.take(), server.take()] == [0.0, 0.0]
    assert server.take() == pytest.approx(1.0)
    assert server.take() == pytest.approx(1.0)  # the refusal took no place in the window
    clock.now += 1.0
    assert server.take() == 0.0


def test_without_a_window_it_is_a_token_bucket() -> None:
    clock = FakeClock()
    bucket = RateLimiter(4 * 60, window=None, clock=clock, sleep=clock.sleep)  # 4 per second, 4 at once
    assert bucket.quota is None and bucket.burst == 4
    assert [bucket.take() for _ in range(4)] == [0.0] * 4
    assert bucket.take() == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.take() == 0.0


def test_book_grants_slots_ahead_and_a_pause_pushes_them_back() -> None:
    clock = FakeClock()
    slots = RateLimiter(600, window=60, burst=1, clock=clock, sleep=clock.sleep)  # 0.1 s apart
    offsets = slots.book(5, horizon=0.25)
    assert np.allclose(offsets, [0.0, 0.1, 0.2])  # the 4th would be 0.3 s out
    slots.pause(2.0)
    assert slots.book(1, horizon=0.0)[0] == pytest.approx(2.1)  # the pause, then one interval
    assert slots.acquire() == pytest.approx(2.2)  # a blocking caller shares the same schedule


def test_a_booked_window_holds_over_every_span() -> None:
    clock = FakeClock()
    slots = RateLimiter(60, window=10, burst=10, clock=clock, sleep=clock.sleep)  # 10 in any 10 s, 10 at once
    offsets = slots.book(25, horizon=100.0)
    assert offsets[:10] == [0.0] * 10
    most = max(sum(1 for o in offsets if t <= o < t + 10) for t in offsets)
    assert most <= 10
