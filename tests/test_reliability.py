"""Reliability: under every fault the emulator can produce, a call returns exactly the clean result or a typed
error; untrustworthy responses never shift vectors onto the wrong items; auth and validation errors fail fast;
``timeout=`` and ``max_retries=`` bound a call against a server that never answers.

Timing assertions are upper bounds only, generous enough for a loaded 2-core machine.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import requests

from conftest import (
    CANARY_KEY,
    DEFAULT_DIMS,
    IMAGE_PROVIDERS,
    PROVIDERS,
    TEXT_MODELS,
    jpeg_bytes,
    make_embedder,
    png_bytes,
)
from mmembed import (
    AuthenticationError,
    Embedder,
    ImageSource,
    InputError,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    TransportError,
)
from mmembed.inputs import ImageItem, TextItem
from mmembed.providers import PROVIDERS as REGISTRY
from mmembed.providers import ProviderOptions
from mmembed.testing import COLOURS, Emulator, Fault, RecordedRequest, colour_photo
from mmembed.transport import RetryPolicy

FAST_RETRY = RetryPolicy(max_retries=12, backoff_base=0.01, backoff_max=0.05, retry_after_cap=0.5)
TEXT_MODEL = TEXT_MODELS
# One of each misbehaviour; 429 with Retry-After 0 and (the emulator runs with retry_after=False) without one.
EVERY_FAULT: list[Fault | str] = [
    Fault("status", status=429, retry_after=0),
    Fault("status", status=429),
    Fault("status", status=500),
    Fault("status", status=502),
    Fault("status", status=503, retry_after=0),
    Fault("status", status=504),
    "reset",
    Fault("hang", delay=3.0),
    "malformed",
    Fault("html"),  # a proxy's 502 page
    Fault("html", status=200),  # a proxy's page with a 200
    "wrong_count",
]


def mixed_items(count: int) -> list[object]:
    """Texts and small, all different, images of many colours (JPEG and PNG bytes, arrays)."""
    colours = list(COLOURS)
    items: list[object] = []
    for i in range(count):
        colour = colours[i % len(colours)]
        kind = i % 4
        if kind in (0, 3):
            items.append(f"item {i}: something {colour}")
        elif kind == 1:
            items.append(jpeg_bytes(colour_photo(colour, size=(48, 32), seed=i)))
        else:
            items.append(png_bytes(colour_photo(colour, size=(40, 40), seed=i)))
    items[10] = np.asarray(colour_photo("red", size=(30, 20), seed=1000))
    return items


@pytest.fixture(scope="module")
def items300() -> list[object]:
    return mixed_items(300)


def fingerprint(request: RecordedRequest) -> str:
    """What a request carried (JSON, form fields, file parts), to spot the same batch sent twice."""
    files = [(name, hashlib.sha256(data).hexdigest()) for name, _, _, data in request.files]
    return json.dumps([request.path, request.json, request.form, files], sort_keys=True)


def small_batches(embedder: Embedder, size: int = 10) -> Embedder:
    """Many requests from few items, so a fault mix has many requests to land on."""
    # Vertex sends one instance per request anyway, and so does a model that takes one item per request.
    if embedder.provider_name not in ("vertex", "bedrock", "twelvelabs"):
        embedder.provider.family.cap = lambda route: size  # type: ignore[method-assign]
    return embedder


def client(provider: str, emulator: Emulator, **options: Any) -> Embedder:
    options.setdefault("requests_per_minute", 1e6)
    embedder = make_embedder(provider, emulator, **options)
    embedder.provider.transport.retry = FAST_RETRY
    return embedder


def shares_a_request(provider: str) -> bool:
    """Whether a text and an image travel in one request to ``provider`` (its family routes them alike)."""
    cls = REGISTRY[provider]
    client = cls(ProviderOptions(api_key=CANARY_KEY, base_url="http://127.0.0.1:9"), **cls.test_options)
    try:
        return client.route(TextItem("a")) == client.route(ImageItem("b", raw=b""))
    finally:
        client.close()


# -- the fault mix ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_fault_mix_gives_exactly_the_clean_result(
    provider: str, items300: list[object], mmembed_emulator_factory: Callable[..., Emulator]
) -> None:
    clean_emulator = mmembed_emulator_factory()
    with small_batches(client(provider, clean_emulator)) as embedder:
        clean = embedder.embed(items300)
    assert clean.shape == (300, DEFAULT_DIMS[provider])
    for i in (0, 3, 299):  # the clean run itself is right: text vectors are the emulator's for that text
        text = items300[i]
        assert isinstance(text, str)
        task = "search_document" if provider == "nomic" else None
        assert float(clean[i] @ clean_emulator.vector(provider, TEXT_MODEL[provider], text=text, task=task)) > 0.9999

    emulator = mmembed_emulator_factory(
        fault_rate=0.3, fault_kinds=EVERY_FAULT, seed=20261122, retry_after=False
    )
    for fault in EVERY_FAULT:  # every kind at least once, then the seeded random draw
        emulator.inject(fault)
    started = time.monotonic()
    with small_batches(client(provider, emulator, timeout=2.0, max_concurrency=4)) as embedder:
        faulty = embedder.embed(items300)
        retries = embedder.provider.transport.stats.retries
    elapsed = time.monotonic() - started

    assert np.array_equal(faulty, clean)
    stats = emulator.stats
    for status in (429, 500, 502, 503, 504):
        assert stats.responses_by_status.get(status, 0) >= 1, status
    assert stats.resets >= 1
    assert retries >= len(EVERY_FAULT)
    assert elapsed < 60  # a hang costs one attempt's 2 s deadline; a loaded machine answers big batches slowly


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_each_fault_in_turn_then_success(provider: str, mmembed_emulator_factory: Callable[..., Emulator]) -> None:
    """One request's worth of items meets every fault in sequence; the log shows each retry, then a 200."""
    emulator = mmembed_emulator_factory(retry_after=False)
    for fault in EVERY_FAULT:
        emulator.inject(fault)
    image = jpeg_bytes(colour_photo("red", size=(64, 48)))
    items: list[object] = ["a red square", image if shares_a_request(provider) else "the blue sea"]  # one request
    if provider in ("bedrock", "twelvelabs"):  # one item per request
        items = items[1:]
    with client(provider, emulator, timeout=0.5, max_concurrency=1) as embedder:
        vectors = embedder.embed(items)
    with client(provider, mmembed_emulator_factory()) as embedder:
        assert np.array_equal(vectors, embedder.embed(items))
    log = emulator.requests
    assert len(log) == len(EVERY_FAULT) + 1
    assert [r.status for r in log[:6]] == [429, 429, 500, 502, 503, 504]
    assert log[6].status is None  # reset: no answer
    assert log[-1].status == 200
    assert len({fingerprint(r) for r in log}) == 1  # the very same request every time


def test_exhausted_retries_give_the_last_typed_error(mmembed_emulator: Emulator) -> None:
    cases: list[tuple[Fault | str, type[ProviderError]]] = [
        (Fault("status", status=429, retry_after=0), RateLimitError),
        (Fault("status", status=503), ProviderError),
        ("reset", TransportError),
        (Fault("hang", delay=2.0), TransportError),
        ("malformed", InvalidResponseError),
        ("wrong_count", InvalidResponseError),
    ]
    for fault, error in cases:
        mmembed_emulator.clear()
        mmembed_emulator.inject(fault, times=3)
        embedder = client("jina", mmembed_emulator, timeout=0.3)
        embedder.provider.transport.retry = RetryPolicy(max_retries=2, backoff_base=0.01)
        with pytest.raises(error) as info:
            embedder.embed(["a", "b"])
        assert type(info.value) is error
        assert len(mmembed_emulator.requests) == 3
        embedder.close()


# -- responses that cannot be trusted --------------------------------------------------------------------


def one_hot(i: int, dims: int) -> list[float]:
    vec = [0.0] * dims
    vec[i] = 1.0
    return vec


def fake_response(payload: Any, status: int = 200) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response.headers["Content-Type"] = "application/json"
    response.encoding = "utf-8"
    return response


def jina_data(indexes: list[Any]) -> dict[str, Any]:
    return {
        "model": "jina-clip-v2",
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": one_hot(n, 1024)} for n, i in enumerate(indexes)],
    }


def offline(provider: str) -> Embedder:
    options: dict[str, Any] = {"project_id": "p"} if provider == "vertex" else {}
    return Embedder(provider, api_key=CANARY_KEY, base_url="http://127.0.0.1:9", **options)


def test_jina_data_is_put_back_in_order_by_index() -> None:
    parse = offline("jina").provider.indexed_parser(4)
    vectors = parse(fake_response(jina_data([2, 0, 3, 1])))
    # entry n carries one_hot(n) and says it belongs to item indexes[n]
    assert [int(np.argmax(v)) for v in vectors] == [1, 3, 0, 2]


@pytest.mark.parametrize(
    "indexes",
    [
        [0, 0, 2],  # duplicated, right count
        [0, 1, 1, 2],  # duplicated, one too many
        [0, 2],  # one missing
        [0, 1, 3],  # out of range
        [-1, 0, 1],  # negative
        [0, "1", 2],  # a string
        [0, 1.5, 2],  # not an integer
        [0, True, 2],  # a boolean is not an index
        [0, None, 2],
    ],
)
def test_jina_untrustworthy_indexes_are_refused(indexes: list[Any]) -> None:
    parse = offline("jina").provider.indexed_parser(3)
    with pytest.raises(InvalidResponseError):
        parse(fake_response(jina_data(indexes)))


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [{"index": 0, "embedding": [1.0] * 1024}, {"embedding": [1.0] * 1024}]},  # no index
        {"data": [{"index": 0}, {"index": 1, "embedding": [1.0] * 1024}]},  # no embedding
        {"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [1.0] * 1024}]},  # base64
        {"data": [{"index": 0, "embedding": [0.0] * 1024}, {"index": 1, "embedding": [1.0] * 1024}]},  # zero
        {"data": [{"index": 0, "embedding": [1.0] * 10}, {"index": 1, "embedding": [1.0] * 1024}]},  # short
        {"data": {"0": [1.0] * 1024}},
        {"embeddings": [[1.0] * 1024] * 2},
        [[1.0] * 1024] * 2,
        b"<html>502 Bad Gateway</html>",
        b'{"data": [',
    ],
)
def test_jina_malformed_bodies_are_refused(payload: Any) -> None:
    parse = offline("jina").provider.indexed_parser(2)
    with pytest.raises(InvalidResponseError):
        parse(fake_response(payload))


def test_nomic_wrong_counts_and_shapes_are_refused() -> None:
    parse = offline("nomic").provider.family._parser(3)  # type: ignore[attr-defined]
    good = [one_hot(i, 768) for i in range(3)]
    assert [int(np.argmax(v)) for v in parse(fake_response({"embeddings": good}))] == [0, 1, 2]
    for bad in (good[:2], [*good, good[0]], [good[0], good[1], [1.0] * 700], [good[0], good[1], [[1.0] * 768]]):
        with pytest.raises(InvalidResponseError):
            parse(fake_response({"embeddings": bad}))


def test_vertex_predictions_are_matched_by_field_not_position() -> None:
    from mmembed.providers.base import Ready

    provider = offline("vertex").provider
    batch = [Ready(text="t"), Ready(gcs_uri="gs://b/o")]  # one instance: text and image
    parse = provider.family._parser(batch)  # type: ignore[attr-defined]
    both = {"imageEmbedding": one_hot(1, 1408), "textEmbedding": one_hot(0, 1408)}
    text_vec, image_vec = parse(fake_response({"predictions": [both]}))
    assert int(np.argmax(text_vec)) == 0 and int(np.argmax(image_vec)) == 1
    for bad in (
        {"predictions": [{"textEmbedding": one_hot(0, 1408)}]},  # the image's vector is missing
        {"predictions": [both, both]},  # two predictions for one instance
        {"predictions": []},
        {"predictions": [[one_hot(0, 1408), one_hot(1, 1408)]]},
    ):
        with pytest.raises(InvalidResponseError):
            parse(fake_response(bad))


class _CannedHandler(BaseHTTPRequestHandler):
    """Answers every POST with the server's canned JSON body (and counts requests)."""

    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hits += 1
        body = json.dumps(self.server.payload).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[Callable[[Any, int], str]]:
    """Start a local HTTP server answering a fixed body; returns its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(payload: Any, status: int = 200) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
        server.payload, server.status, server.hits = payload, status, 0  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_server_that_always_duplicates_indexes_gets_an_error_not_a_result(
    canned: Callable[[Any, int], str],
) -> None:
    url = canned(jina_data([0, 0, 2]), 200)
    embedder = Embedder("jina", api_key=CANARY_KEY, base_url=url, max_retries=2)
    embedder.provider.transport.retry = RetryPolicy(max_retries=2, backoff_base=0.01)
    with pytest.raises(InvalidResponseError, match="indexes"):
        embedder.embed(["a", "b", "c"])
    assert embedder.provider.transport.stats.requests == 3
    embedder.close()


# -- authentication and validation fail fast -------------------------------------------------------------


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_a_refused_key_is_an_authentication_error_at_once(
    provider: str, items300: list[object], mmembed_emulator_factory: Callable[..., Emulator]
) -> None:
    emulator = mmembed_emulator_factory(api_keys=["the-right-key"])
    with client(provider, emulator, max_concurrency=2) as embedder:
        with pytest.raises(AuthenticationError) as info:
            embedder.embed(["hello"])
        assert len(emulator.requests) == 1
        assert info.value.provider == provider and info.value.status in (400, 401, 403)
        # A long call stops at the first refusal: nothing is retried, only what was already in flight is sent.
        emulator.clear()
        with pytest.raises(AuthenticationError):
            small_batches(embedder).embed(items300[:60])
        assert embedder.provider.transport.stats.retries == 0
        sent = [fingerprint(r) for r in emulator.requests]
        assert len(set(sent)) == len(sent)  # no batch was sent twice
        # At most the window (max_concurrency + 1 batches) plus one dispatched as the first refusal came back.
        assert len(sent) <= 4


@pytest.mark.parametrize(
    ("provider", "options", "status"),
    [
        ("nomic", {"text_model": "nomic-embed-text-v9"}, 400),
        ("jina", {"model": "jina-clip-v9"}, 400),
        ("vertex", {"model": "multimodalembedding@999"}, 400),
    ],
)
def test_validation_errors_are_typed_and_not_retried(
    provider: str, options: dict[str, Any], status: int, mmembed_emulator: Emulator
) -> None:
    with client(provider, mmembed_emulator, **options) as embedder:
        with pytest.raises(ProviderError) as info:
            embedder.embed(["hello"])
    assert type(info.value) is ProviderError  # not a retried kind: no RateLimit / Transport / InvalidResponse
    assert info.value.status == status and info.value.provider == provider
    assert "v9" in str(info.value) or "999" in str(info.value)  # the provider's own message is carried
    assert len(mmembed_emulator.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_other_4xx_are_never_retried(provider: str, status: int, mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=status), times=5)
    with client(provider, mmembed_emulator) as embedder:
        with pytest.raises(ProviderError) as info:
            embedder.embed(["hello"])
    assert info.value.status == status
    assert len(mmembed_emulator.requests) == 1


# -- timeouts --------------------------------------------------------------------------------------------


class BlackHole:
    """A TCP server that accepts connections and never answers (nor closes them) until stopped."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._sock.settimeout(0.05)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self._sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def max_backoff(max_retries: int, policy: RetryPolicy) -> float:
    return sum(min(policy.backoff_max, policy.backoff_base * 2**a) for a in range(max_retries))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("max_retries", [0, 2])
def test_timeout_and_max_retries_bound_a_call_to_a_silent_server(
    provider: str, max_retries: int, black_hole: BlackHole
) -> None:
    timeout = 0.3
    options: dict[str, Any] = dict(REGISTRY[provider].test_options)
    embedder = Embedder(
        provider, api_key=CANARY_KEY, base_url=black_hole.url, timeout=timeout, max_retries=max_retries, **options
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match="timed out"):
        embedder.embed(["hello"])
    elapsed = time.monotonic() - started
    embedder.close()
    # Only Embedder options are used here: the default back-off (jittered, at most its cap) counts too.
    bound = (max_retries + 1) * timeout + max_backoff(max_retries, embedder.provider.transport.retry) + 1.5
    assert elapsed < bound
    assert len(black_hole.accepted) == max_retries + 1  # every attempt reached the server, then gave up


def test_timeout_bounds_a_client_side_image_download(black_hole: BlackHole) -> None:
    """Vertex downloads http(s) images itself; the call's timeout= applies to that download too."""
    embedder = Embedder(
        "vertex", api_key=CANARY_KEY, project_id="p", base_url="http://127.0.0.1:9", timeout=0.3,
        allow_private_urls=True,
    )
    started = time.monotonic()
    with pytest.raises(InputError, match="download failed") as info:
        embedder.embed(["caption", ImageSource(f"{black_hole.url}/photo.jpg")])
    assert time.monotonic() - started < 2.5
    assert info.value.index == 1
    embedder.close()
