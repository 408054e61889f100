"""Transport: retries (which statuses, how long), Retry-After, the shared rate limiter, no retry on auth."""

from __future__ import annotations

import email.utils
import threading
import time

import pytest

from conftest import CANARY_KEY
from mmembed import AuthenticationError, Embedder, InvalidResponseError, ProviderError, RateLimitError
from mmembed.testing import Emulator, Fault
from mmembed.transport import RateLimiter, RetryPolicy, parse_retry_after


def jina(emulator: Emulator, **options: object) -> Embedder:
    options.setdefault("max_retries", 3)
    return Embedder("jina", base_url=emulator.url, api_key=CANARY_KEY, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(status: int, mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=status, retry_after=0), times=2)
    vectors = jina(mmembed_emulator).embed(["hello"])
    assert vectors.shape == (1, 1024)
    assert [r.status for r in mmembed_emulator.requests] == [status, status, 200]


@pytest.mark.parametrize("fault", ["reset", "malformed", "html", "wrong_count"])
def test_broken_answers_are_retried(fault: str, mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(fault)
    vectors = jina(mmembed_emulator).embed(["hello", "world"])
    clean = jina(mmembed_emulator).embed(["hello", "world"])
    assert (vectors == clean).all()


def test_untrustworthy_response_raises_after_retries(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject("wrong_count", times=10)
    with pytest.raises(InvalidResponseError, match="expected 2 embeddings, got 1"):
        jina(mmembed_emulator, max_retries=2).embed(["hello", "world"])
    assert len(mmembed_emulator.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_fail_fast(status: int, mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=status), times=5)
    with pytest.raises(AuthenticationError) as info:
        jina(mmembed_emulator).embed(["hello"])
    assert len(mmembed_emulator.requests) == 1
    assert info.value.status == status and info.value.provider == "jina"
    assert CANARY_KEY not in str(info.value) and CANARY_KEY not in repr(info.value)


def test_wrong_key_is_an_authentication_error() -> None:
    with Emulator(api_keys=["the-right-key"]) as emulator:
        with pytest.raises(AuthenticationError) as info:
            jina(emulator).embed(["hello"])
        assert info.value.status == 401
        assert len(emulator.requests) == 1


def test_validation_errors_are_not_retried(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=422), times=5)
    with pytest.raises(ProviderError) as info:
        jina(mmembed_emulator).embed(["hello"])
    assert info.value.status == 422
    assert len(mmembed_emulator.requests) == 1
    assert info.value.request_id  # the emulator sends one, like the real API


def test_rate_limit_error_after_all_retries(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=429, retry_after=0), times=10)
    with pytest.raises(RateLimitError) as info:
        jina(mmembed_emulator, max_retries=2).embed(["hello"])
    assert info.value.status == 429 and info.value.retry_after == 0


def test_retry_after_seconds_is_honoured(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=503, retry_after=1))
    started = time.monotonic()
    jina(mmembed_emulator).embed(["hello"])
    assert time.monotonic() - started >= 0.95


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after(future) or 0) <= 31
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_retry_after_is_capped(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=429, retry_after=3600))
    embedder = jina(mmembed_emulator)
    embedder.provider.transport.retry = RetryPolicy(max_retries=2, retry_after_cap=0.2)
    started = time.monotonic()
    embedder.embed(["hello"])
    assert time.monotonic() - started < 2.0


def test_backoff_has_full_jitter() -> None:
    import random

    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    rng = random.Random(1)
    delays = [policy.backoff(3, rng) for _ in range(200)]
    assert 0 <= min(delays) < 1.0 and 7.0 < max(delays) <= 8.0


def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(per_minute=600)  # 10 per second
    started = time.monotonic()
    for _ in range(6):
        limiter.acquire()
    assert 0.45 <= time.monotonic() - started < 1.0


def test_pause_holds_every_worker() -> None:
    limiter = RateLimiter(per_minute=None)
    limiter.pause(0.3)
    times: list[float] = []

    def worker() -> None:
        limiter.acquire()
        times.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(times) - started >= 0.28


def test_429_slows_all_workers_together() -> None:
    with Emulator(rate_limit=5, retry_after=True) as emulator:
        embedder = jina(emulator, max_concurrency=4, requests_per_minute=100_000, max_retries=8)
        embedder.provider.cap = lambda route: 1  # type: ignore[method-assign]  # one text per request
        vectors = embedder.embed([f"t{i}" for i in range(12)])
        assert vectors.shape == (12, 1024)
        # Without the shared pause, four workers hammering a 5 rps server would see far more 429s.
        assert emulator.stats.rate_limited <= 8


def test_in_flight_requests_stay_within_max_concurrency() -> None:
    with Emulator(latency=0.1) as emulator:
        embedder = jina(emulator, max_concurrency=3, requests_per_minute=100_000)
        embedder.provider.cap = lambda route: 1  # type: ignore[method-assign]
        embedder.embed([f"t{i}" for i in range(12)])
        assert emulator.stats.max_in_flight <= 3
        assert embedder.provider.transport.stats.max_in_flight == 3


def test_connections_are_reused(mmembed_emulator: Emulator) -> None:
    embedder = jina(mmembed_emulator, max_concurrency=1)
    for i in range(5):
        embedder.embed([f"text {i}"])
    assert mmembed_emulator.stats.connections == 1


def test_timeout_bounds_a_call_against_a_server_that_never_answers(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("hang", delay=5), times=10)
    embedder = jina(mmembed_emulator, timeout=0.3, max_retries=1)
    embedder.provider.transport.retry = RetryPolicy(max_retries=1, backoff_base=0.05)
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out"):
        embedder.embed(["hello"])
    assert time.monotonic() - started < 1.5


def test_a_trickling_answer_is_cut_at_the_timeout_and_retried(mmembed_emulator: Emulator) -> None:
    """Every read gets a few bytes in time, so only the deadline on the whole attempt can end it."""
    texts = [f"text {i}" for i in range(8)]
    clean = jina(mmembed_emulator).embed(texts)
    mmembed_emulator.clear()
    mmembed_emulator.inject(Fault("trickle", delay=0.05))  # ~16 bytes per 50 ms: a 40 KB answer takes minutes
    embedder = jina(mmembed_emulator, timeout=1.0, max_retries=1)
    embedder.provider.transport.retry = RetryPolicy(max_retries=1, backoff_base=0.05)

    started = time.monotonic()
    again = embedder.embed(texts)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert (again == clean).all()
    assert [r.status for r in mmembed_emulator.requests] == [200, 200]  # the first one, cut off mid-body
    assert embedder.provider.transport.stats.retries == 1


def test_an_answer_that_never_completes_raises_a_timeout_naming_the_deadline(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("trickle", delay=0.05), times=5)
    embedder = jina(mmembed_emulator, timeout=0.5, max_retries=1)
    embedder.provider.transport.retry = RetryPolicy(max_retries=1, backoff_base=0.05)
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"timed out: no complete answer within 0\.5 s") as info:
        embedder.embed(["hello"])
    assert time.monotonic() - started < 2.0
    assert info.value.provider == "jina" and CANARY_KEY not in str(info.value)


def test_debug_logs_never_hold_the_key(mmembed_emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    mmembed_emulator.inject("500")
    jina(mmembed_emulator).embed(["hello"])
    vertex = Embedder("vertex", base_url=mmembed_emulator.url, api_key=CANARY_KEY, project_id="p")
    vertex.embed(["hello"])
    assert caplog.records
    assert all(CANARY_KEY not in r.getMessage() for r in caplog.records)


