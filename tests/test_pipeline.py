"""The pipeline's parts: where a call's requests are sent from (the inline choice), order, de-duplication."""

from __future__ import annotations

import json
import threading

import numpy as np
import requests

from conftest import CANARY_KEY, jpeg_bytes
from mmembed import Embedder
from mmembed.providers import Ready, Task
from mmembed.testing import colour_photo
from mmembed.transport import mock_response
from test_transport import jina_answer


def recording_embedder() -> tuple[Embedder, list[tuple[str, int]], list[requests.PreparedRequest]]:
    """A Jina embedder answered in-process; records (sending thread, batch size) per request."""
    embedder = Embedder("jina", api_key=CANARY_KEY, base_url="https://x.invalid")
    seen: list[requests.PreparedRequest] = []
    plain = jina_answer(seen)

    def answer(request: requests.PreparedRequest) -> requests.Response:
        response = plain(request)
        texts = [entry.get("text", "") for entry in json.loads(request.body or b"{}")["input"]]
        data = json.loads(response.content)["data"]
        for entry, text in zip(data, texts, strict=True):  # "tN" gets N + 1 as its first value
            if text[1:].isdigit():
                entry["embedding"][0] = float(text[1:]) + 1
        return mock_response(200, json={"data": data})

    embedder.provider.transport.mount(answer)
    sends: list[tuple[str, int]] = []
    send = embedder.provider.send

    def recorded(route: str, batch: list[Ready], task: Task) -> list[np.ndarray]:
        sends.append((threading.current_thread().name, len(batch)))
        return send(route, batch, task)

    embedder.provider.send = recorded  # type: ignore[method-assign]
    return embedder, sends, seen


def test_a_small_text_call_is_sent_on_the_callers_thread() -> None:
    embedder, sends, seen = recording_embedder()
    progress: list[int] = []
    vectors = embedder.embed_query(["b", "a", "b"], progress=progress.append)
    assert sends == [(threading.current_thread().name, 2)]  # one request, no pool hop; "b" sent once
    assert [entry["text"] for entry in json.loads(seen[0].body)["input"]] == ["b", "a"]
    assert np.array_equal(vectors[0], vectors[2]) and not np.array_equal(vectors[0], vectors[1])
    assert sum(progress) == 3


def test_a_small_call_of_several_requests_goes_to_the_send_pool_in_order() -> None:
    embedder, sends, _ = recording_embedder()
    embedder.provider.cap = lambda route: 2  # type: ignore[method-assign]
    vectors = embedder.embed([f"t{i}" for i in range(5)])
    assert sorted(size for _, size in sends) == [1, 2, 2]
    assert all(name.startswith("mmembed-send") for name, _ in sends)
    assert vectors.shape == (5, 1024)
    first = vectors[:, 0]  # the handler answers "tN" with (N + 1, 1, 0, ...): rows must come back in input order
    assert np.all(np.diff(first) > 0)


def test_a_small_call_with_an_image_is_prepared_and_sent_on_the_pools() -> None:
    embedder, sends, seen = recording_embedder()
    vectors = embedder.embed(["a text", jpeg_bytes(colour_photo("red", size=(64, 48)))])
    assert vectors.shape == (2, 1024) and len(sends) == 1 and sends[0][0].startswith("mmembed-send")
    body = json.loads(seen[0].body)
    assert body["input"][0] == {"text": "a text"} and set(body["input"][1]) == {"image"}
