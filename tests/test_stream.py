"""Embedder.embed_stream (answers as they arrive, per-item errors) and the caller-thread path of small calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGE_PROVIDERS, jpeg_bytes
from mmembed import Embedder, EmbeddingCache, InputError, ProviderError
from mmembed.testing import Emulator, Fault, colour_photo


def photo(colour: str, seed: int) -> bytes:
    return jpeg_bytes(colour_photo(colour, size=(120, 80), seed=seed))


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_stream_yields_every_index_once_with_the_vectors_embed_gives(
    provider: str, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    items: list[object] = [f"note {i}" for i in range(25)] + [photo("red", i) for i in range(4)]
    embedder = embedder_for(provider, requests_per_minute=1e6)
    streamed = list(embedder.embed_stream(iter(items)))  # a generator in, answers out as they come
    assert sorted(i for i, _ in streamed) == list(range(len(items)))
    vectors = dict(streamed)
    assert np.array_equal(np.stack([vectors[i] for i in range(len(items))]), embedder.embed(items))


def test_a_bad_item_is_reported_alone_and_its_batch_still_goes(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    good = photo("blue", 1)
    items: list[object] = ["a caption", b"not an image at all", good, None, "another caption"]
    out = dict(embedder_for("jina").embed_stream(items))
    assert sorted(out) == [0, 1, 2, 3, 4]
    assert isinstance(out[1], InputError) and out[1].index == 1
    assert isinstance(out[3], InputError) and out[3].index == 3
    assert all(isinstance(out[i], np.ndarray) for i in (0, 2, 4))
    (request,) = mmembed_emulator.requests  # one request, without the two bad items
    assert [next(iter(i)) for i in request.json["input"]] == ["text", "image", "text"]


def test_streamed_answers_are_cached_as_they_arrive_and_duplicates_sent_once(
    tmp_path: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    embedder = embedder_for("nomic", cache=cache, requests_per_minute=1e6)
    items = [f"t{i % 15}" for i in range(30)]  # every text twice
    out = dict(embedder.embed_stream(items))
    assert sorted(out) == list(range(30))
    assert all(np.array_equal(out[i], out[i + 15]) for i in range(15))
    sent = [t for r in mmembed_emulator.requests for t in r.json["texts"]]
    assert sorted(sent) == sorted(f"t{i}" for i in range(15))
    assert len(cache) == 15
    mmembed_emulator.clear()
    again = dict(embedder.embed_stream(items))  # all from the cache: nothing sent
    assert mmembed_emulator.requests == []
    assert all(np.array_equal(again[i], out[i]) for i in range(30))


def test_a_provider_failure_ends_the_stream_with_the_error(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    mmembed_emulator.inject(Fault("status", status=422), times=5)
    with pytest.raises(ProviderError) as info:
        list(embedder_for("jina").embed_stream(["hello"]))
    assert info.value.status == 422


def test_stopping_early_lets_running_requests_finish(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("nomic", requests_per_minute=1e6)
    stream = embedder.embed_stream(f"text {i}" for i in range(200))
    first = next(stream)
    stream.close()  # the caller stops reading: nothing left pending, the embedder still works
    assert isinstance(first[1], np.ndarray)
    assert embedder.embed(["after"]).shape == (1, 768)


def test_a_small_text_call_runs_on_the_callers_thread(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("jina")
    threads: list[str] = []
    send = embedder.provider.send

    def spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return send(*args, **kwargs)  # type: ignore[arg-type]

    embedder.provider.send = spy  # type: ignore[method-assign]
    vectors = embedder.embed_query(["one", "two", "one"])
    assert threads == [threading.current_thread().name]
    assert np.array_equal(vectors[0], vectors[2])
    (request,) = mmembed_emulator.requests
    assert request.json["input"] == [{"text": "one"}, {"text": "two"}]  # the duplicate went once
    assert request.json["task"] == "retrieval.query"
    embedder.embed([photo("red", 0), "caption"])  # an image: through the pipeline's workers
    assert threads[-1].startswith("mmembed-send")


def test_the_callers_thread_path_keeps_errors_and_the_cache(
    tmp_path: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("nomic", cache=str(tmp_path / "c.sqlite"))
    with pytest.raises(InputError) as info:
        embedder.embed_query(["fine", None])
    assert info.value.index == 1
    assert mmembed_emulator.requests == []
    first = embedder.embed_query(["cached query"])
    mmembed_emulator.clear()
    assert np.array_equal(embedder.embed_query(["cached query"]), first)
    assert mmembed_emulator.requests == []
    mmembed_emulator.inject(Fault("status", status=503, retry_after=0))
    embedder.embed_query(["retried"])
    assert [r.status for r in mmembed_emulator.requests] == [503, 200]
