"""Transport: retries (which statuses, how long), Retry-After, the shared rate limiter, no retry on auth."""

from __future__ import annotations

import bisect
import email.utils
import functools
import json
import threading
import time
from collections.abc import Callable

import pytest
import requests

from conftest import CANARY_KEY
from mmembed import AuthenticationError, Embedder, InvalidResponseError, ProviderError, RateLimitError
from mmembed.testing import Emulator, Fault
from mmembed.transport import RateLimiter, RetryPolicy, Transport, mock_response, parse_retry_after


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


class FakeClock:
    """A clock the limiter reads and sleeps on: time moves only when it sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_after_idle_goes_out_without_waiting() -> None:
    clock = FakeClock()
    limiter = RateLimiter(500, window=60, burst=5, clock=clock, sleep=clock.sleep)  # Jina: 500/min, 5 at a time
    assert [limiter.acquire() for _ in range(5)] == [0.0] * 5
    waits = [limiter.acquire() for _ in range(3)]  # beyond the burst: the average rate, 120 ms apart
    assert waits == pytest.approx([0.12] * 3)
    clock.now += 60  # idle again: the next burst is free
    assert [limiter.acquire() for _ in range(5)] == [0.0] * 5


def test_the_limiter_keeps_every_window_under_the_quota() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1200 / 5, window=300, burst=8, clock=clock, sleep=clock.sleep)  # Nomic: 1200 per 5 min
    assert limiter.quota == 1200
    starts = []
    for _ in range(3000):  # far more demand than the quota, as fast as the limiter lets it go
        limiter.acquire()
        starts.append(clock.now)
    most = max(bisect.bisect_left(starts, t + 300) - i for i, t in enumerate(starts))
    assert most <= 1200  # over *every* 300 s window, not only aligned ones
    assert starts[7] == starts[0]  # the burst went at once
    assert starts[-1] - starts[0] == pytest.approx((3000 - 8) / 4)  # then the average rate, 4 per second


def test_a_window_quota_binds_when_the_burst_is_the_whole_quota() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, window=10, clock=clock, sleep=clock.sleep)  # 10 per 10 s, no smoothing asked for
    assert [limiter.acquire() for _ in range(10)] == [0.0] * 10
    assert limiter.acquire() == pytest.approx(10.0)  # the 11th waits for the 1st to leave the window


def test_a_request_counts_until_one_window_after_it_ended() -> None:
    # The server counts a request when it arrives, somewhere between our start and the answer: holding its
    # slot from start to one window after the end makes any network delay safe.
    clock = FakeClock()
    limiter = RateLimiter(12, window=10, clock=clock, sleep=clock.sleep)  # 2 per 10 s
    assert limiter.acquire() == 0.0
    clock.now += 5
    limiter.release()  # the answer came 5 s later
    assert limiter.acquire() == 0.0
    limiter.release()
    assert limiter.acquire() == pytest.approx(10.0)  # not 5 s (first start + window): first end + window


def test_pause_restarts_at_the_average_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, window=60, burst=5, clock=clock, sleep=clock.sleep)
    limiter.pause(2.0)
    assert limiter.acquire() == pytest.approx(2.1)  # the pause, then one interval: no burst right after a 429


def test_embed_query_bursts_go_out_without_a_client_side_wait(mmembed_emulator: Emulator) -> None:
    embedder = jina(mmembed_emulator)  # Jina's defaults: 500 per minute, 5 in flight
    limiter = embedder.provider.transport.limiter
    waits: list[float] = []
    acquire = limiter.acquire
    limiter.acquire = lambda: waits.append(acquire()) or waits[-1]  # type: ignore[method-assign]
    for i in range(5):
        embedder.embed_query([f"query {i}"])
    assert waits == [0.0] * 5
    sent = [r.json for r in mmembed_emulator.requests]
    assert [b["input"] for b in sent] == [[{"text": f"query {i}"}] for i in range(5)]
    assert all(b["task"] == "retrieval.query" for b in sent)


def test_a_sustained_run_against_a_windowed_limit_draws_at_most_a_stray_429(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmembed.providers import JinaProvider

    # The emulator allows 10 requests in any 0.5 s; the client declares the same window (20/s over 0.5 s).
    monkeypatch.setattr(JinaProvider, "rate_window", 0.5)
    with Emulator(rate_limit=20, rate_window=0.5) as emulator:
        embedder = jina(emulator, requests_per_minute=20 * 60, max_concurrency=4, max_retries=8)
        assert embedder.provider.transport.limiter.quota == 10
        embedder.provider.family.cap = lambda route: 1  # type: ignore[method-assign]  # one text per request
        texts = [f"t{i}" for i in range(40)]
        vectors = embedder.embed(texts)
        assert vectors.shape == (40, 1024)
        assert emulator.stats.rate_limited <= 1
        answered = sorted(r.json["input"][0]["text"] for r in emulator.requests if r.status == 200)
        assert answered == sorted(texts)


def test_the_emulator_window_refuses_what_its_quota_does_not_allow() -> None:
    with Emulator(rate_limit=500 / 60, rate_window=60) as emulator:
        session = requests.Session()
        body = {"model": "jina-clip-v2", "input": ["x"]}
        statuses = [
            session.post(f"{emulator.url}/v1/embeddings", json=body, headers={"Authorization": "Bearer k"}).status_code
            for _ in range(12)
        ]
        assert statuses == [200] * 12  # a token bucket of 8.3 would have refused some
        assert emulator._bucket is not None
        assert all(emulator._bucket.take() == 0.0 for _ in range(500 - 12))  # the rest of the window's quota
        refused = session.post(f"{emulator.url}/v1/embeddings", json=body, headers={"Authorization": "Bearer k"})
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "500 requests per 60 s" in refused.json()["detail"]


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
        embedder.provider.family.cap = lambda route: 1  # type: ignore[method-assign]  # one text per request
        vectors = embedder.embed([f"t{i}" for i in range(12)])
        assert vectors.shape == (12, 1024)
        # Without the shared pause, four workers hammering a 5 rps server would see far more 429s.
        assert emulator.stats.rate_limited <= 8


def test_in_flight_requests_stay_within_max_concurrency() -> None:
    with Emulator(latency=0.1) as emulator:
        embedder = jina(emulator, max_concurrency=3, requests_per_minute=100_000)
        embedder.provider.family.cap = lambda route: 1  # type: ignore[method-assign]
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




# -- an injected transport: answers in-process, no socket, the same retry/limit/deadline logic ----------------
Handler = Callable[[requests.PreparedRequest], requests.Response]


def jina_answer(requests_seen: list[requests.PreparedRequest]) -> Handler:
    def answer(request: requests.PreparedRequest) -> requests.Response:
        requests_seen.append(request)
        body = json.loads(request.body or b"{}")
        data = [{"index": i, "embedding": [float(i + 1), 1.0] + [0.0] * 1022} for i in range(len(body["input"]))]
        return mock_response(200, json={"data": data})

    return answer


def test_a_mounted_handler_answers_the_wire_shape_without_a_socket() -> None:
    seen: list[requests.PreparedRequest] = []
    embedder = Embedder("jina", api_key=CANARY_KEY, base_url="https://gateway.invalid")
    embedder.provider.transport.mount(jina_answer(seen))
    vectors = embedder.embed_query(["a red square", "the blue sea"])
    assert vectors.shape == (2, 1024) and vectors[1, 0] > vectors[0, 0]  # rows in input order
    (request,) = seen
    assert request.url == "https://gateway.invalid/v1/embeddings"
    assert request.headers["Authorization"] == f"Bearer {CANARY_KEY}"
    body = json.loads(request.body or b"{}")
    assert body["input"] == [{"text": "a red square"}, {"text": "the blue sea"}]
    assert body["task"] == "retrieval.query" and body["model"] == "jina-clip-v2"


def test_a_handler_failure_is_retried_like_a_server_one() -> None:
    seen: list[requests.PreparedRequest] = []
    ok = jina_answer(seen)

    def answer(request: requests.PreparedRequest) -> requests.Response:
        if not seen and not getattr(answer, "failed", False):
            answer.failed = True  # type: ignore[attr-defined]
            return mock_response(503, headers={"Retry-After": "0"})
        return ok(request)

    transport = Transport("jina", handler=answer)
    embedder = Embedder("jina", api_key=CANARY_KEY)
    embedder.provider.transport = transport
    assert embedder.embed(["hello"]).shape == (1, 1024)
    assert transport.stats.requests == 2 and transport.stats.retries == 1 and len(seen) == 1


def test_the_attempt_deadline_applies_to_a_handler() -> None:
    def slow(request: requests.PreparedRequest) -> requests.Response:
        time.sleep(0.3)
        return mock_response(200, json={"data": []})

    transport = Transport("jina", timeout=0.1, retry=RetryPolicy(max_retries=0), handler=slow)
    with pytest.raises(ProviderError, match="timed out"):
        transport.post("https://x.invalid/v1/embeddings", lambda r: r.json(), headers={}, json={})


def test_a_429_pauses_every_window_of_the_client() -> None:
    def refuse(request: requests.PreparedRequest) -> requests.Response:
        return mock_response(429, json={"detail": "slow down"}, headers={"Retry-After": "0.5"})

    transport = Transport("jina", retry=RetryPolicy(max_retries=0), handler=refuse)
    transport.windows["inputs"] = RateLimiter(10_000, window=60)
    transport.windows["images"] = RateLimiter(400, window=60)
    with pytest.raises(RateLimitError):
        transport.post("https://x.invalid/v1/embed", lambda r: r.json(), headers={}, json={}, costs={"inputs": 3})
    # The request charged only inputs; the images window is held back too, and so is the request limiter.
    assert transport.windows["images"].take() > 0.4
    assert transport.windows["inputs"].take() > 0.4
    assert transport.stats.rate_limited == 1 and transport.limiter.acquire() > 0.3


def test_every_window_wait_is_counted_in_stats() -> None:
    seen: list[requests.PreparedRequest] = []
    transport = Transport("jina", handler=jina_answer(seen))
    transport.windows["inputs"] = RateLimiter(2 * 60 / 0.3, window=0.3, paced=False)  # 2 inputs in any 0.3 s
    post = functools.partial(transport.post, "https://x.invalid/v1/embeddings", lambda r: r.json(), headers={})
    post(json={"input": ["a", "b"]}, costs={"inputs": 2})
    assert transport.stats.waited == 0.0
    post(json={"input": ["c"]}, costs={"inputs": 1})
    assert transport.stats.waited >= 0.25
