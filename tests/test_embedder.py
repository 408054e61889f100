"""The Embedder end to end against the emulator: order, shapes, tasks, batching, dimensions, uploads."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DEFAULT_DIMS, IMAGE_PROVIDERS, PROVIDERS, TEXT_MODELS, jpeg_bytes, png_bytes
from mmembed import ConfigurationError, Embedder, InputError, TextTooLongWarning
from mmembed.providers import PROVIDERS as REGISTRY
from mmembed.testing import Emulator, colour_photo

COLOURS = ["red", "blue", "green", "yellow"]


def mixed_items(big_photo_path: Path) -> list[object]:
    rgba = Image.new("RGBA", (300, 200), (0, 0, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    array = np.asarray(colour_photo("yellow", size=(640, 480)))
    return [
        "a red square",
        big_photo_path,
        png_bytes(colour_photo("green", size=(400, 300))),
        rgba,
        array,
        "the blue sea",
    ]


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_mixed_items_embed_in_input_order(
    provider: str, big_photo_path: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    items = mixed_items(big_photo_path)
    vectors = embedder_for(provider).embed(items)
    assert vectors.dtype == np.float32
    assert vectors.shape == (6, DEFAULT_DIMS[provider])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Each vector is the emulator's answer for that very item: nothing shifted or reordered.
    model = TEXT_MODELS[provider]
    task = "search_document" if provider == "nomic" else None
    expected_first = mmembed_emulator.vector(provider, model, text="a red square", task=task)
    assert float(vectors[0] @ expected_first) > 0.999
    red_image, green_image, blue_image, yellow_image = vectors[1], vectors[2], vectors[3], vectors[4]
    text_red, text_blue = vectors[0], vectors[5]
    assert red_image @ text_red > green_image @ text_red
    assert blue_image @ text_blue > red_image @ text_blue
    assert yellow_image @ yellow_image > 0.99


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_query_red_is_nearest_the_red_photo(provider: str, embedder_for: Callable[..., Embedder]) -> None:
    embedder = embedder_for(provider)
    photos = [jpeg_bytes(colour_photo(c, size=(800, 600))) for c in COLOURS]
    images = embedder.embed(photos)
    (query,) = embedder.embed_query(["red"])
    scores = images @ query
    assert COLOURS[int(np.argmax(scores))] == "red"


def test_nomic_query_task_and_text_batches_of_ten(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("nomic")
    texts = [f"text number {i}" for i in range(25)]
    vectors = embedder.embed(texts)
    assert vectors.shape == (25, 768)
    sent = [r for r in mmembed_emulator.requests if r.path == "/v1/embedding/text"]
    assert sorted(len(r.json["texts"]) for r in sent) == [5, 10, 10]
    assert all(r.json["task_type"] == "search_document" for r in sent)
    assert sorted(t for r in sent for t in r.json["texts"]) == sorted(texts)
    mmembed_emulator.clear()
    embedder.embed_query(["red"])
    (query_request,) = mmembed_emulator.requests
    assert query_request.json == {"model": "nomic-embed-text-v1.5", "texts": ["red"], "task_type": "search_query"}
    assert query_request.headers["authorization"].startswith("Bearer ")


def test_jina_query_task_and_one_mixed_request(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("jina")
    png = png_bytes(colour_photo("red", size=(300, 200)))
    embedder.embed(["a", png, "b"])
    (request,) = mmembed_emulator.requests
    assert request.path == "/v1/embeddings"
    assert request.json["model"] == "jina-clip-v2"
    assert "task" not in request.json
    inputs = request.json["input"]
    assert inputs[0] == {"text": "a"} and inputs[2] == {"text": "b"}
    assert base64.b64decode(inputs[1]["image"]) == png  # small PNG passes through untouched, bare base64
    mmembed_emulator.clear()
    embedder.embed_query(["red"])
    (query,) = mmembed_emulator.requests
    assert query.json["task"] == "retrieval.query"


def test_vertex_one_instance_per_request_pairs_text_and_image(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("vertex", dimensions=256)
    photos = [jpeg_bytes(colour_photo(c, size=(700, 500))) for c in ("red", "blue")]
    vectors = embedder.embed(["one", photos[0], "two", "three", photos[1]])
    assert vectors.shape == (5, 256)
    requests = mmembed_emulator.requests
    assert all(len(r.json["instances"]) == 1 for r in requests)
    assert all(r.json["parameters"] == {"dimension": 256} for r in requests)
    assert all("parameters" not in r.json["instances"][0] for r in requests)
    assert all(r.path.endswith("/publishers/google/models/multimodalembedding@001:predict") for r in requests)
    assert "/projects/test-project/locations/us-central1/" in requests[0].path
    assert all("x-goog-api-key" in r.headers and "key" not in r.query for r in requests)
    kinds = sorted(tuple(sorted(r.json["instances"][0])) for r in requests)
    assert kinds == [("image", "text"), ("image", "text"), ("text",)]  # paired: 3 requests for 5 items
    for r in requests:
        image = r.json["instances"][0].get("image")
        if image:
            assert image["mimeType"] == "image/jpeg"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dimensions_256_for_texts_and_images(
    provider: str, big_photo_path: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    model = REGISTRY[provider].hosting_for(TEXT_MODELS[provider]).family.models.get(TEXT_MODELS[provider])
    if model is not None and not model.matryoshka:  # a model not trained for truncation (CLIP): refused
        with pytest.raises(ConfigurationError, match="not trained for truncation"):
            embedder_for(provider, dimensions=256)
        return
    items: list[object] = ["a red square", big_photo_path] if provider in IMAGE_PROVIDERS else ["a red square"]
    vectors = embedder_for(provider, dimensions=256).embed(items)
    assert vectors.shape == (len(items), 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    if provider == "nomic":
        (text_request,) = [r for r in mmembed_emulator.requests if r.path == "/v1/embedding/text"]
        assert text_request.json["dimensionality"] == 256
    if provider == "jina":
        assert mmembed_emulator.requests[0].json["dimensions"] == 256


@pytest.mark.parametrize(("provider", "side"), [("nomic", 336), ("jina", 512), ("vertex", 512)])
def test_big_photo_is_uploaded_small(
    provider: str, side: int, big_photo_path: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder_for(provider).embed([big_photo_path])
    (request,) = mmembed_emulator.requests
    if provider == "nomic":
        ((name, _filename, content_type, data),) = request.files
        assert name == "images" and content_type == "image/jpeg"
        assert request.form["model"] == ["nomic-embed-vision-v1.5"]
    elif provider == "jina":
        data = base64.b64decode(request.json["input"][0]["image"])
    else:
        data = base64.b64decode(request.json["instances"][0]["image"]["bytesBase64Encoded"])
    assert big_photo_path.stat().st_size > 1_000_000
    assert len(data) < 400_000
    with Image.open(io.BytesIO(data)) as uploaded:
        assert min(uploaded.size) == side
        assert uploaded.size == (side * 3 // 2, side)


def test_nomic_urls_go_as_urls(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    from mmembed import ImageSource

    with pytest.raises(Exception):  # noqa: B017 - the emulator cannot fetch this; only the wire shape matters
        embedder_for("nomic", max_retries=0).embed([ImageSource("http://127.0.0.1:9/red.jpg")])
    (request,) = mmembed_emulator.requests
    assert request.form == {"model": ["nomic-embed-vision-v1.5"], "urls": ["http://127.0.0.1:9/red.jpg"]}
    assert request.files == []


def test_results_in_order_with_many_concurrent_batches(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("nomic", max_concurrency=4)
    texts = [f"word{i} {'red' if i % 3 == 0 else 'blue'}" for i in range(95)]
    batched = embedder.embed(texts)
    for i in (0, 1, 47, 94):
        expected = mmembed_emulator.vector("nomic", "nomic-embed-text-v1.5", text=texts[i], task="search_document")
        assert float(batched[i] @ expected) > 0.9999


def test_duplicates_in_one_call_are_embedded_once(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    vectors = embedder_for("jina").embed(["same", "other", "same"])
    (request,) = mmembed_emulator.requests
    assert request.json["input"] == [{"text": "same"}, {"text": "other"}]
    np.testing.assert_array_equal(vectors[0], vectors[2])


def test_bad_item_is_named_by_index(embedder_for: Callable[..., Embedder]) -> None:
    with pytest.raises(InputError) as info:
        embedder_for("jina").embed(["fine", b"not an image at all"])
    assert info.value.index == 1
    assert "item 1" in str(info.value)


@pytest.mark.parametrize("single", ["a lone string", b"bytes", np.zeros((4, 4, 3), np.uint8), Path("x.jpg")])
def test_a_single_item_instead_of_a_list_is_refused(single: object) -> None:
    from mmembed import ImageSource

    embedder = Embedder("jina", api_key="k")
    for item in (single, ImageSource("x.jpg")):
        with pytest.raises(TypeError, match="wrap a single item in a list"):
            embedder.embed(item)  # type: ignore[arg-type]


def test_empty_input_gives_empty_array(embedder_for: Callable[..., Embedder]) -> None:
    assert embedder_for("jina").embed([]).shape == (0, 1024)


def test_iterables_and_generators_are_accepted(embedder_for: Callable[..., Embedder]) -> None:
    vectors = embedder_for("jina").embed(f"text {i}" for i in range(3))
    assert vectors.shape == (3, 1024)


def test_vertex_warns_once_about_long_text(embedder_for: Callable[..., Embedder]) -> None:
    embedder = embedder_for("vertex")
    long_text = " ".join(["photograph"] * 40)
    with pytest.warns(TextTooLongWarning):
        embedder.embed([long_text])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.embed([long_text + " again"])  # warned once per embedder


@pytest.mark.parametrize(
    ("provider", "options", "message"),
    [
        ("nomic", {"model": "x"}, "text_model"),
        ("jina", {"text_model": "x"}, "model="),
        ("jina", {"dimensions": 2000}, "at most 1024"),
        ("vertex", {"dimensions": 300, "project_id": "p"}, "128, 256, 512, 1408"),
        ("jina", {"model": "jina-clip-v1", "dimensions": 256}, "not trained for truncation"),
        ("openai", {}, "unknown provider"),
    ],
)
def test_configuration_errors(provider: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Embedder(provider, api_key="k", **options)  # type: ignore[arg-type]


def test_missing_key_names_env_var_and_argument() -> None:
    with pytest.raises(ConfigurationError) as info:
        Embedder("jina")
    assert "JINA_API_KEY" in str(info.value) and "api_key=" in str(info.value)


def test_key_from_env_var(monkeypatch: pytest.MonkeyPatch, mmembed_emulator: Emulator) -> None:
    monkeypatch.setenv("MY_JINA", "env-key-123")
    Embedder("jina", api_key_env_var="MY_JINA", base_url=mmembed_emulator.url).embed(["x"])
    assert mmembed_emulator.requests[0].headers["authorization"] == "Bearer env-key-123"


def test_jina_v4_query_and_passage_tasks(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    embedder = embedder_for("jina", model="jina-embeddings-v4")
    vectors = embedder.embed_query(["hello"])
    assert vectors.shape == (1, 2048)
    assert mmembed_emulator.requests[0].json["task"] == "retrieval.query"
    embedder.embed(["hello"])
    assert mmembed_emulator.requests[1].json["task"] == "retrieval.passage"
