"""Voyage multimodal-3.5 / -3 against the emulator: what was sent, and what came back."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CANARY_KEY, jpeg_bytes, png_bytes
from mmembed import ConfigurationError, Embedder, ImageSource, ProviderError
from mmembed.providers.voyage import MONGODB_BASE_URL, TOKEN_CAP, VoyageProvider, image_tokens
from mmembed.testing import Emulator, colour_photo

UPLOADS = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "png", "webp"))
PATH = "/v1/multimodalembeddings"
MODEL = "voyage-multimodal-3.5"


def mixed(n: int) -> list[object]:
    """``n`` items alternating texts and small photos of several kinds (bytes, PIL, arrays)."""
    colours = ["red", "blue", "green", "yellow"]
    items: list[object] = []
    for i in range(n):
        colour = colours[(i // 2) % 4]  # item 2k (a text) and 2k+1 (a photo) share a colour
        if i % 2 == 0:
            items.append(f"note {i}: something {colour}")
        elif i % 3 == 0:
            items.append(jpeg_bytes(colour_photo(colour, size=(160 + i, 120))))  # distinct: none is deduplicated
        else:
            items.append(colour_photo(colour, size=(120 + i, 90)))
    return items


def segments(request: object) -> list[list[dict[str, str]]]:
    return [entry["content"] for entry in request.json["inputs"]]  # type: ignore[attr-defined]


def test_mixed_list_in_input_order_one_request(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    items = mixed(200)
    vectors = embedder_for("voyage").embed(items)
    assert vectors.shape == (200, 1024) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    (request,) = mmembed_emulator.requests  # 200 items: ONE request, accepted
    assert request.status == 200 and request.path == PATH
    assert request.headers["authorization"] == f"Bearer {CANARY_KEY}"
    body = request.json
    assert set(body) == {"inputs", "model", "input_type", "truncation"}
    assert body["model"] == MODEL and body["input_type"] == "document" and body["truncation"] is True
    sent = segments(request)
    assert all(len(content) == 1 for content in sent)
    for item, (segment,) in zip(items, sent, strict=True):
        if isinstance(item, str):
            assert segment == {"type": "text", "text": item}
        else:
            assert set(segment) == {"type", "image_base64"} and segment["type"] == "image_base64"
            assert segment["image_base64"].startswith(UPLOADS)
    # Each row is the emulator's answer for that very item.
    for i, item in enumerate(items):  # each text's row is the emulator's answer for that very text
        if isinstance(item, str):
            assert float(vectors[i] @ mmembed_emulator.vector("voyage", MODEL, text=item, dimensions=1024)) > 0.999
    assert vectors[1] @ vectors[0] > vectors[3] @ vectors[0]  # "…red" is nearer the red photo than the blue one


def test_embed_query_sends_input_type_query(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    embedder = embedder_for("voyage")
    embedder.embed_query(["something red"])
    (request,) = mmembed_emulator.requests
    assert request.json["input_type"] == "query"
    assert segments(request) == [[{"type": "text", "text": "something red"}]]


def test_urls_never_share_a_request_with_uploads(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    url = "https://example.com/red.jpg"
    embedder = embedder_for("voyage", max_retries=0)
    with pytest.raises(ProviderError) as err:  # the emulator fetches loopback URLs only: the refusal proves routing
        embedder.embed(["a text", ImageSource(url), jpeg_bytes(colour_photo("blue", size=(64, 64)))])
    by_kind = {tuple(sorted({s["type"] for c in segments(r) for s in c})) for r in mmembed_emulator.requests}
    assert ("image_url",) in by_kind and ("image_base64", "text") in by_kind
    url_request = next(r for r in mmembed_emulator.requests if "image_url" in str(r.json))
    assert segments(url_request) == [[{"type": "image_url", "image_url": url}]]
    assert err.value.status == 400 and "loopback" in str(err.value)


def test_dimensions_and_models(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    vectors = embedder_for("voyage", dimensions=256).embed(["red", "blue"])
    assert vectors.shape == (2, 256)
    assert mmembed_emulator.requests[-1].json["output_dimension"] == 256
    assert embedder_for("voyage", dimensions=2048).embed(["red"]).shape == (1, 2048)
    with pytest.raises(ConfigurationError, match="256, 512, 1024, 2048"):
        embedder_for("voyage", dimensions=300)
    v3 = embedder_for("voyage", model="voyage-multimodal-3").embed(["red"])
    assert v3.shape == (1, 1024)
    assert "output_dimension" not in mmembed_emulator.requests[-1].json
    with pytest.raises(ConfigurationError):
        embedder_for("voyage", model="voyage-multimodal-3", dimensions=512)


def test_truncation_is_a_setting(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    embedder_for("voyage", truncation=False).embed(["short"])
    assert mmembed_emulator.requests[-1].json["truncation"] is False
    with pytest.raises(ProviderError) as err:
        embedder_for("voyage", truncation=False, max_retries=0).embed(["word " * 40_000])
    assert err.value.status == 400 and "truncation" in str(err.value)
    assert embedder_for("voyage").embed(["word " * 40_000]).shape == (1, 1024)  # trimmed by the server


def test_images_shrunk_within_the_pixel_budget(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator, big_photo_path: Path
) -> None:
    panorama = colour_photo("green", size=(6000, 1000))
    embedder_for("voyage").embed([big_photo_path, panorama])
    sizes = []
    for (segment,) in segments(mmembed_emulator.requests[0]):
        data = base64.b64decode(segment["image_base64"].split(",", 1)[1])
        sizes.append(Image.open(io.BytesIO(data)).size)
    assert sizes[0] == (1536, 1024)  # shortest side 1024 (3:2 photo: 1.6 M pixels)
    assert sizes[1][0] * sizes[1][1] <= 2_000_000 and sizes[1][1] < 1000  # a 6:1 panorama: within 2 M pixels


def test_token_cap_splits_a_batch_of_big_images(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    # 150 photos of 1.57 M pixels: 2,800 tokens each, 420k in all, over the 320k cap of one request.
    photo = png_bytes(Image.new("RGB", (1536, 1024), (200, 30, 30)))
    assert 150 * image_tokens(1536 * 1024) > TOKEN_CAP
    vectors = embedder_for("voyage").embed([photo + bytes([i]) for i in range(150)])  # distinct contents
    assert vectors.shape == (150, 1024)
    requests = mmembed_emulator.requests
    assert len(requests) == 2 and all(r.status == 200 for r in requests)
    assert sum(len(r.json["inputs"]) for r in requests) == 150


def test_errors_carry_detail_and_request_id(mmembed_emulator: Emulator) -> None:
    embedder = Embedder("voyage", base_url=mmembed_emulator.url, api_key=CANARY_KEY, model="voyage-x")
    with pytest.raises(ProviderError) as err:
        embedder.embed(["red"])
    assert err.value.status == 400 and "voyage-x" in str(err.value)
    assert err.value.request_id  # from the request-id header
    assert CANARY_KEY not in str(err.value) and CANARY_KEY not in repr(embedder)


def test_mongodb_keys_go_to_mongodb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOYAGE_API_KEY", "al-abc")
    assert Embedder("voyage").provider.base_url == MONGODB_BASE_URL
    assert Embedder("voyage", api_key="pa-abc").provider.base_url == VoyageProvider.default_base_url
    assert Embedder("voyage", base_url="http://gw.example").provider.base_url == "http://gw.example"


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOYAGE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="VOYAGE_API_KEY"):
        Embedder("voyage")


def test_long_texts_close_a_batch_before_the_token_cap(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    texts = [f"{i:04d} " + "lorem ipsum " * 333 for i in range(300)]  # ~1,010 estimated tokens each
    assert embedder_for("voyage").embed(texts).shape == (300, 1024)
    requests = mmembed_emulator.requests
    assert len(requests) == 2 and all(r.status == 200 for r in requests)
    assert sorted(len(r.json["inputs"]) for r in requests) == [4, 296]  # closed by fits(), at 300k estimated


def test_interleaved_travels_as_one_input_with_two_segments(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    from mmembed import Interleaved

    photo = colour_photo("red", size=(120, 90))
    vectors = embedder_for("voyage").embed(["a red bicycle", Interleaved(["a red bicycle", photo]), photo])
    (request,) = mmembed_emulator.requests
    contents = segments(request)
    assert [[s["type"] for s in c] for c in contents] == [["text"], ["text", "image_base64"], ["image_base64"]]
    assert contents[1][0] == {"type": "text", "text": "a red bicycle"}
    assert vectors.shape == (3, 1024)
    # ONE vector from both parts: the emulator's mean of the two, not either one.
    assert 0.6 < float(vectors[1] @ vectors[0]) < 0.99 and 0.6 < float(vectors[1] @ vectors[2]) < 0.99


def test_video_segments_on_3_5(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    from mmembed import Interleaved, UnsupportedKindError
    from mmembed.testing.media import make_video

    video = make_video(2.0, colour=(255, 0, 0))
    vectors = embedder_for("voyage").embed(["something red", video, Interleaved(["red", video])])
    (request,) = mmembed_emulator.requests
    contents = segments(request)
    assert [[s["type"] for s in c] for c in contents] == [["text"], ["video_base64"], ["text", "video_base64"]]
    assert contents[1][0]["video_base64"].startswith("data:video/mp4;base64,")
    assert float(vectors[1] @ vectors[0]) > float(vectors[1] @ embedder_for("voyage").embed(["blue"])[0])
    with pytest.raises(UnsupportedKindError, match=r"voyage-multimodal-3\.5"):
        embedder_for("voyage", model="voyage-multimodal-3").embed([video])
