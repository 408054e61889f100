"""Adaptive concurrency against self-hosted servers: the limiter's rules, and a server of fixed capacity kept
saturated with no rate or concurrency setting, every item embedded exactly once."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

from mmembed import Embedder
from mmembed._adaptive import AdaptiveLimiter
from mmembed.testing import Emulator, colour_photo
from mmembed.testing._selfhosted import Capacity
from mmembed.testing.imagedata import decode_image
from mmembed.testing.vllm import Vllm


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_grows_while_answers_come_at_the_floor_and_halves_on_a_refusal() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(32, initial=1, clock=clock)
    assert limiter.limit == 1
    for _ in range(3):  # slow start: one more per answer at the floor, so it doubles every round trip
        _round(limiter, int(limiter.limit), 0.1)
    assert limiter.limit == 8
    clock.now += 1
    limiter.observe(503, 0.05)
    assert limiter.limit == 4
    limiter.observe(503, 0.5)  # started before the cut: the same episode, no second cut
    assert limiter.limit == 4
    clock.now += 1
    limiter.observe(429, 0.05)
    assert limiter.limit == 2
    _round(limiter, 2, 0.1)  # congestion avoidance now: one more per round trip
    assert limiter.limit == pytest.approx(2 + 1 / 2 + 1 / 2.5)


def test_a_limit_the_client_does_not_use_does_not_grow() -> None:
    limiter = AdaptiveLimiter(32, initial=1)
    for _ in range(20):  # one request at a time (the caller sends no more)
        _round(limiter, 1, 0.1)
    assert limiter.limit <= 3


def _round(limiter: AdaptiveLimiter, count: int, seconds: float) -> None:
    for _ in range(count):
        limiter.acquire()
    for _ in range(count):
        limiter.observe(200, seconds)
    for _ in range(count):
        limiter.release()


def test_a_queueing_latency_stops_growth_and_a_blow_up_cuts() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(32, initial=8, clock=clock)
    for _ in range(8):
        limiter.acquire()
    limiter.observe(200, 0.1)  # the floor
    grown = limiter.limit
    limiter.observe(200, 0.15)  # within (1 + tolerance) x floor: still grows
    assert limiter.limit > grown
    limiter.observe(200, 0.5)  # one slow answer (5x: the client's own hiccup) is smoothed away: no cut
    assert limiter.limit > grown
    for _ in range(6):  # answers settle near 3x the floor: a queue is forming, growth stops
        limiter.observe(200, 0.3)
    held = limiter.limit
    limiter.observe(200, 0.3)
    assert limiter.limit == held
    clock.now += 1
    for _ in range(10):  # settled far above: cut by a quarter, once for the episode
        limiter.observe(200, 1.0)
    assert limiter.limit == pytest.approx(held * 0.75)


def test_limit_stays_under_the_ceiling_minus_the_reserved_slot() -> None:
    limiter = AdaptiveLimiter(4, initial=100)
    assert limiter.limit == 3


def test_a_priority_request_does_not_wait_behind_bulk() -> None:
    limiter = AdaptiveLimiter(4, initial=1)
    limiter.acquire()  # bulk holds the only bulk slot
    waited: list[float] = []

    def bulk() -> None:
        waited.append(limiter.acquire())
        limiter.release()

    blocked = threading.Thread(target=bulk)
    blocked.start()
    time.sleep(0.05)
    with limiter.priority():
        started = time.monotonic()
        limiter.acquire()  # the reserved slot
        assert time.monotonic() - started < 0.05
        limiter.release()
    assert blocked.is_alive()  # bulk still waits for its slot
    limiter.release()
    blocked.join(2)
    assert waited and not blocked.is_alive()


def test_a_pause_after_a_429_is_held_about_one_service_time() -> None:
    limiter = AdaptiveLimiter(8)
    limiter.acquire()
    limiter.observe(200, 0.02)
    limiter.release()
    limiter.pause(30.0)  # no Retry-After from a self-hosted server: the transport's default pause
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started < 0.5


def _photos(count: int) -> list[bytes]:
    colours = ("red", "green", "blue", "yellow", "purple", "orange")
    out = []
    for i in range(count):
        buf = io.BytesIO()
        colour_photo(colours[i % len(colours)], size=(48, 32), seed=i).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def test_a_server_of_fixed_capacity_is_kept_saturated_without_any_setting() -> None:
    """Acceptance: >= 0.9 of capacity by the server's own clock, 503s retried, every item embedded once.

    Texts in requests of 32 (19 requests of 160 ms of server time each): the client must keep more than one in
    flight to cover its own round trips, and more than 4 waiting are refused with a 503 (the limit grows into
    that and is cut). Texts keep the client's and the emulator's CPU small, so what is measured is the
    concurrency, not how a machine shared with other work schedules image decoding.
    """
    capacity = Capacity(200, queue=4)  # 200 items/s; beyond 4 waiting requests: 503
    texts = [f"caption number {i} of a red thing" for i in range(600)]
    with Emulator(vllm_capacity=capacity) as emu:
        with Embedder("vllm", base_url=emu.url_for("vllm"), batch_size=32) as embedder:
            vectors = embedder.embed(texts)
            assert embedder.provider.controller is not None  # no rate or concurrency setting: adaptive
        stats = capacity.stats()
        refused = emu.stats.responses_by_status.get(503, 0)
        endpoint = emu.endpoint("vllm")
        assert isinstance(endpoint, Vllm)
    assert vectors.shape == (600, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for i in (0, 301, 599):  # in input order: each row is its own text's vector
        np.testing.assert_allclose(vectors[i], endpoint.vector(("text", texts[i])), atol=1e-6)
    assert stats.served == 600  # each item served once: nothing lost to a 503, nothing sent twice
    assert stats.refused_requests == refused
    assert stats.fraction >= 0.9, f"achieved {stats.achieved:.0f} of {stats.items_per_second:.0f} items/s"


def test_busy_answers_are_retried_and_never_surface() -> None:
    capacity = Capacity(50, queue=0)  # nothing may wait: a second request in flight is refused
    photos = _photos(40)
    with Emulator(vllm_capacity=capacity) as emu:
        with Embedder("vllm", base_url=emu.url_for("vllm")) as embedder:  # one image per request
            vectors = embedder.embed(photos)
        refused = emu.stats.responses_by_status.get(503, 0)
        endpoint = emu.endpoint("vllm")
        assert isinstance(endpoint, Vllm)
    assert vectors.shape == (40, 512)
    assert capacity.stats().served == 40
    assert refused > 0  # the server did refuse, and the client hid it
    for i in (0, 17, 39):  # each row is its own photo's vector
        np.testing.assert_allclose(vectors[i], endpoint.vector(("image", decode_image(photos[i]))), atol=1e-6)


def test_a_query_is_not_starved_behind_a_bulk_ingest() -> None:
    capacity = Capacity(100, queue=4)
    photos = _photos(300)  # one per request: 3 s of the server's time
    with Emulator(vllm_capacity=capacity) as emu:
        url = emu.url_for("vllm")
        with Embedder("vllm", base_url=url, model="openai/clip-vit-base-patch32") as embedder:
            bulk = threading.Thread(target=embedder.embed, args=(photos,))
            bulk.start()
            time.sleep(0.8)
            started = time.monotonic()
            (query,) = embedder.embed_query(["red"])
            waited = time.monotonic() - started
            still_ingesting = bulk.is_alive()
            bulk.join(60)
    assert query.shape == (512,)
    assert still_ingesting  # the query went while the ingest kept the server busy
    assert waited < 1.0, f"the query waited {waited:.2f} s behind the ingest"
