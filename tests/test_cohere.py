"""Cohere embed-v4.0 against the emulator: what was sent, and what came back."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable

import numpy as np
import pytest
import requests
from PIL import Image

from conftest import CANARY_KEY, jpeg_bytes
from mmembed import AuthenticationError, ConfigurationError, Embedder, ProviderError, RateLimitError
from mmembed.ratelimit import RateLimiter
from mmembed.testing import Emulator, colour_photo
from mmembed.testing import cohere as emulated_cohere
from mmembed.transport import mock_response

UPLOADS = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "png", "webp"))
PATH = "/v2/embed"
MODEL = "embed-v4.0"


def mixed(n: int) -> list[object]:
    """``n`` items alternating texts and distinct small photos (bytes and PIL images)."""
    colours = ["red", "blue", "green", "yellow"]
    items: list[object] = []
    for i in range(n):
        colour = colours[(i // 2) % 4]
        if i % 2 == 0:
            items.append(f"note {i}: something {colour}")
        elif i % 3 == 0:
            items.append(jpeg_bytes(colour_photo(colour, size=(160 + i, 120))))
        else:
            items.append(colour_photo(colour, size=(120 + i, 90)))
    return items


def test_mixed_list_in_input_order_three_requests(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    items = mixed(200)
    vectors = embedder_for("cohere").embed(items)
    assert vectors.shape == (200, 1536) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    requests = mmembed_emulator.requests
    assert len(requests) == 3 and all(r.status == 200 and r.path == PATH for r in requests)  # 96 + 96 + 8
    assert all(r.headers["authorization"] == f"Bearer {CANARY_KEY}" for r in requests)
    for r in requests:
        assert set(r.json) == {"model", "input_type", "embedding_types", "inputs", "truncate"}
        assert r.json["model"] == MODEL and r.json["input_type"] == "search_document"
        assert r.json["embedding_types"] == ["float"] and r.json["truncate"] == "END"
    # The requests may arrive in any order; their inputs, in batch order, are the items in input order.
    sent = sorted((r.json["inputs"] for r in requests), key=len, reverse=True)
    contents = [entry["content"] for batch in sent for entry in batch]
    assert sorted(len(batch) for batch in sent) == [8, 96, 96]
    texts = [c[0]["text"] for c in contents if c[0]["type"] == "text"]
    assert sorted(texts) == sorted(i for i in items if isinstance(i, str))
    for content in contents:
        (segment,) = content
        if segment["type"] == "image_url":
            assert set(segment) == {"type", "image_url"} and set(segment["image_url"]) == {"url"}
            assert segment["image_url"]["url"].startswith(UPLOADS)
        else:
            assert set(segment) == {"type", "text"}
    for i, item in enumerate(items):  # each text's row is the emulator's answer for that very text
        if isinstance(item, str):
            assert float(vectors[i] @ mmembed_emulator.vector("cohere", MODEL, text=item)) > 0.999
    assert vectors[1] @ vectors[0] > vectors[3] @ vectors[0]  # "…red" is nearer the red photo than the blue one


def test_texts_only_batches_use_inputs_too(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    embedder_for("cohere").embed(["red", "blue"])
    (request,) = mmembed_emulator.requests
    assert "texts" not in request.json and "images" not in request.json
    assert request.json["inputs"] == [
        {"content": [{"type": "text", "text": "red"}]},
        {"content": [{"type": "text", "text": "blue"}]},
    ]


def test_embed_query_sends_search_query(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    vector = embedder_for("cohere").embed_query(["something red"])
    (request,) = mmembed_emulator.requests
    assert request.json["input_type"] == "search_query"
    expected = mmembed_emulator.vector("cohere", MODEL, text="something red", task="search_query")
    assert float(vector[0] @ expected) > 0.999


def test_dimensions(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    assert embedder_for("cohere", dimensions=256).embed(["red"]).shape == (1, 256)
    assert mmembed_emulator.requests[-1].json["output_dimension"] == 256
    with pytest.raises(ConfigurationError, match="256, 512, 1024, 1536"):
        embedder_for("cohere", dimensions=768)


def test_truncation_false_sends_truncate_none(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder_for("cohere", truncation=False).embed(["red"])
    assert mmembed_emulator.requests[-1].json["truncate"] == "NONE"


def test_images_at_most_1568_pixels_a_side(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    embedder_for("cohere").embed([colour_photo("red", size=(3000, 2000)), colour_photo("green", size=(6000, 1000))])
    (request,) = mmembed_emulator.requests
    sizes = []
    for entry in request.json["inputs"]:
        data = base64.b64decode(entry["content"][0]["image_url"]["url"].split(",", 1)[1])
        sizes.append(Image.open(io.BytesIO(data)).size)
    assert sizes[0] == (1536, 1024)  # shortest side 1024
    assert max(sizes[1]) <= 1568  # a 6:1 panorama: longest side within what the model sees


def test_image_rate_is_its_own_limit(
    mmembed_emulator_factory: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulated_cohere, "IMAGE_WINDOW", 1.0)  # a one-second "minute" on both sides
    emulator = mmembed_emulator_factory(cohere_images_per_minute=5)
    photos = [jpeg_bytes(colour_photo("red", size=(64 + i, 64))) for i in range(6)]
    # A trial key's 5 images a minute, said: no request carries more, and the sixth image waits for the window.
    embedder = Embedder("cohere", base_url=emulator.url, api_key=CANARY_KEY, images_per_minute=5)
    window = embedder.provider.images  # type: ignore[attr-defined]
    window.window = 1.0
    embedder.embed(photos[:5] + ["texts are not counted"] * 1)
    assert [r.status for r in emulator.requests] == [200]
    assert sum(len(r.json["inputs"]) for r in emulator.requests) == 6
    start = time.monotonic()
    embedder.embed([photos[5]])
    assert time.monotonic() - start >= 0.5  # waited for the window instead of meeting a 429
    # Not said (the default is a production key's 400 a minute): the emulator's trial limit answers 429s.
    time.sleep(1.0)
    emulator.clear()
    fast = Embedder("cohere", base_url=emulator.url, api_key=CANARY_KEY, max_retries=0)
    with pytest.raises(RateLimitError) as err:
        fast.embed([jpeg_bytes(colour_photo("blue", size=(64 + i, 80))) for i in range(6)])
    assert "images_per_minute=5" in str(err.value)


def test_images_per_minute_caps_images_per_request(mmembed_emulator: Emulator) -> None:
    embedder = Embedder("cohere", base_url=mmembed_emulator.url, api_key=CANARY_KEY, images_per_minute=600)
    photos = [jpeg_bytes(colour_photo("red", size=(64 + i, 64))) for i in range(100)]
    embedder.embed(photos)
    assert sorted(len(r.json["inputs"]) for r in mmembed_emulator.requests) == [4, 96]
    with pytest.raises(ConfigurationError):
        Embedder("cohere", api_key="k", images_per_minute=0)


def test_image_window_waits_count_in_stats(mmembed_emulator: Emulator) -> None:
    embedder = Embedder("cohere", base_url=mmembed_emulator.url, api_key=CANARY_KEY)
    images = RateLimiter(400, window=0.3, paced=False)  # 2 images in any 0.3 s
    embedder.provider.images = embedder.provider.transport.windows["images"] = images
    photos = [jpeg_bytes(colour_photo("red", size=(64 + i, 64))) for i in range(4)]
    assert embedder.embed(photos).shape == (4, 1536)
    assert [len(r.json["inputs"]) for r in mmembed_emulator.requests] == [2, 2]  # no more than the window allows
    assert embedder.stats.waited >= 0.25  # the second request waited for the image window, and it shows


def test_a_429_pauses_the_image_and_input_windows_too() -> None:
    def refuse(request: requests.PreparedRequest) -> requests.Response:
        return mock_response(429, json={"id": "r1", "message": "too many"}, headers={"Retry-After": "0.5"})

    embedder = Embedder("cohere", api_key=CANARY_KEY, max_retries=0)
    embedder.provider.transport.mount(refuse)
    with pytest.raises(RateLimitError):
        embedder.embed(["a text only"])
    assert embedder.provider.images.take() > 0.4 and embedder.provider.inputs.take() > 0.4


def test_input_window_blocks_until_the_window_frees() -> None:
    window = RateLimiter(2000, window=0.3, paced=False)  # 10 inputs in any 0.3 s
    assert window.quota == 10
    assert window.acquire(6) == 0.0 and window.acquire(4) == 0.0
    assert window.acquire(3) > 0.2


def test_errors_and_keys(mmembed_emulator_factory: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = mmembed_emulator_factory(api_keys=["good"])
    with pytest.raises(AuthenticationError) as auth:
        Embedder("cohere", base_url=emulator.url, api_key=CANARY_KEY).embed(["red"])
    assert auth.value.status == 401 and "invalid api token" in str(auth.value)
    assert CANARY_KEY not in str(auth.value) and CANARY_KEY not in repr(auth.value)
    with pytest.raises(ProviderError) as err:
        Embedder("cohere", base_url=emulator.url, api_key="good", model="embed-v9").embed(["red"])
    assert err.value.status == 404 and "embed-v9" in str(err.value) and err.value.request_id
    monkeypatch.setenv("CO_API_KEY", "from-co")
    embedder = Embedder("cohere")
    assert embedder.provider.api_key_env_var == "CO_API_KEY" and "from-co" not in repr(embedder)
    monkeypatch.setenv("COHERE_API_KEY", "from-cohere")
    assert Embedder("cohere").provider.api_key_env_var == "COHERE_API_KEY"
    monkeypatch.delenv("COHERE_API_KEY")
    monkeypatch.delenv("CO_API_KEY")
    with pytest.raises(ConfigurationError, match="COHERE_API_KEY or CO_API_KEY"):
        Embedder("cohere")


def test_interleaved_travels_as_one_input_with_two_segments(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    from mmembed import Interleaved

    photo = colour_photo("red", size=(120, 90))
    vectors = embedder_for("cohere").embed(["a red bicycle", Interleaved(["a red bicycle", photo]), photo])
    (request,) = mmembed_emulator.requests
    contents = [entry["content"] for entry in request.json["inputs"]]
    assert [[s["type"] for s in c] for c in contents] == [["text"], ["text", "image_url"], ["image_url"]]
    assert set(contents[1][1]["image_url"]) == {"url"}
    assert 0.6 < float(vectors[1] @ vectors[0]) < 0.99 and 0.6 < float(vectors[1] @ vectors[2]) < 0.99


def test_video_and_audio_are_refused_naming_who_can(embedder_for: Callable[..., Embedder]) -> None:
    from mmembed import UnsupportedKindError
    from mmembed.testing.media import make_video

    with pytest.raises(UnsupportedKindError, match=r"voyage \(voyage-multimodal-3.5\)"):
        embedder_for("cohere").embed([make_video(1.0)])
