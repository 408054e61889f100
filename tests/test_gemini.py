"""gemini-embedding-2 on the Gemini API (provider ``gemini``) and on Vertex, against the emulator.

Wire facts pinned here (``../shared/reference/PROVIDERS-NEXT.md`` 1a/1b):
* Gemini API: ``POST /v1beta/models/{m}:batchEmbedContents``, body ``{"requests": [...]}`` with at most 100
  requests, each ``{"model": "models/{m}", "content": {"parts": [one part]}, "outputDimensionality": d}`` in
  lowerCamelCase; the key in ``x-goog-api-key``, never ``?key=``; answer ``{"embeddings": [{"values"}]}``.
* one content per item: the SDKs' merging of consecutive strings would give one vector for many texts;
* gemini-embedding-2 takes its task as a prompt prefix, never ``taskType``; gemini-embedding-001 takes
  ``taskType`` (RETRIEVAL_QUERY / RETRIEVAL_DOCUMENT) and no images;
* Vertex: ``…/locations/global/publishers/google/models/gemini-embedding-2:embedContent``, one content per
  call, options in ``embedContentConfig``; answer ``embedding.values`` + ``usageMetadata`` + ``truncated``;
* errors are ``google.rpc.Status``: 400 ``API_KEY_INVALID`` is a refused key, a 429's ``RetryInfo.retryDelay``
  says when to retry.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from conftest import CANARY_KEY, jpeg_bytes, png_bytes
from mmembed import (
    AuthenticationError,
    ConfigurationError,
    Embedder,
    ImageSource,
    InputError,
    ProviderError,
    RateLimitError,
)
from mmembed.providers import _google
from mmembed.testing import Emulator, Fault, colour_photo

MODEL = "gemini-embedding-2"
BATCH_PATH = f"/v1beta/models/{MODEL}:batchEmbedContents"
QUERY = "task: search result | query: {text}"
DOCUMENT = "title: none | text: {text}"


def gemini(emu: Emulator, **options: Any) -> Embedder:
    options.setdefault("max_retries", 0)
    return Embedder("gemini", base_url=emu.url, api_key=options.pop("api_key", CANARY_KEY), **options)


def vertex(emu: Emulator, **options: Any) -> Embedder:
    options.setdefault("max_retries", 0)
    options.setdefault("model", MODEL)
    return Embedder("vertex", base_url=emu.url, api_key=options.pop("api_key", CANARY_KEY), **options)


def non_2xx(emu: Emulator) -> dict[int, int]:
    return {s: n for s, n in emu.stats.responses_by_status.items() if not 200 <= s < 300}


def parts_of(emu: Emulator) -> list[dict[str, Any]]:
    """Every request's single part, in the order the requests were sent."""
    out = []
    for sent in emu.requests:
        for request in sent.json["requests"]:
            (part,) = request["content"]["parts"]
            out.append(part)
    return out


def decoded(part: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))


@pytest.fixture
def photo_path(tmp_path: Path) -> Path:
    path = tmp_path / "green.jpg"
    path.write_bytes(jpeg_bytes(colour_photo("green", size=(1600, 1200))))
    return path


# -- the Gemini API ---------------------------------------------------------------------------------------


def test_mixed_list_one_content_per_item_in_order(mmembed_emulator: Emulator, photo_path: Path) -> None:
    items: list[object] = [
        "a red car", photo_path, "the blue sea", png_bytes(colour_photo("yellow", size=(300, 200))),
        colour_photo("blue", size=(640, 480)), "green grass",
    ]
    with gemini(mmembed_emulator) as emb:
        got = emb.embed(items)

    assert got.shape == (6, 3072) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert non_2xx(mmembed_emulator) == {}
    sent = mmembed_emulator.requests
    assert [r.path for r in sent] == [BATCH_PATH] * len(sent)
    requests_ = [r for s in sent for r in s.json["requests"]]
    assert len(requests_) == 6  # one EmbedContentRequest per item, never merged
    for request in requests_:
        assert set(request) == {"model", "content", "outputDimensionality"}  # lowerCamelCase, no taskType
        assert request["model"] == f"models/{MODEL}" and request["outputDimensionality"] == 3072
        assert len(request["content"]["parts"]) == 1
    # Order: one request per item, in input order (all six fit in one call).
    assert len(sent) == 1
    parts = parts_of(mmembed_emulator)
    kinds = ["text" if "text" in p else p["inlineData"]["mimeType"] for p in parts]
    assert kinds == ["text", "image/jpeg", "text", "image/png", "image/jpeg", "text"]
    assert [p["text"] for p in parts if "text" in p] == [
        DOCUMENT.format(text=t) for t in ("a red car", "the blue sea", "green grass")
    ]
    # Each row is the emulator's answer for that very item, so nothing was shifted.
    for row, part in enumerate(parts):
        if "text" in part:
            expected = mmembed_emulator.vector("gemini", MODEL, text=part["text"])
        else:
            expected = mmembed_emulator.vector("gemini", MODEL, image=decoded(part))
        np.testing.assert_allclose(got[row], expected, atol=1e-6)


def test_the_green_photo_is_shrunk_to_768_on_its_short_side(mmembed_emulator: Emulator, photo_path: Path) -> None:
    with gemini(mmembed_emulator) as emb:
        emb.embed([photo_path])
    (part,) = parts_of(mmembed_emulator)
    assert part["inlineData"]["mimeType"] == "image/jpeg"
    assert decoded(part).size == (1024, 768)


def test_a_panorama_is_capped_at_2048_on_its_long_side(mmembed_emulator: Emulator) -> None:
    with gemini(mmembed_emulator) as emb:
        emb.embed([colour_photo("red", size=(8000, 1000))])
    (part,) = parts_of(mmembed_emulator)
    assert decoded(part).size == (2048, 256)


def test_sdk_merge_trap_three_texts_three_requests_three_vectors(mmembed_emulator: Emulator) -> None:
    """Google's SDKs merge consecutive strings into one Content for this model: one vector for three texts."""
    texts = ["a red car", "the blue sea", "a yellow banana"]
    with gemini(mmembed_emulator) as emb:
        got = emb.embed(texts)

    (sent,) = mmembed_emulator.requests
    assert len(sent.json["requests"]) == 3
    assert [r["content"]["parts"] for r in sent.json["requests"]] == [
        [{"text": DOCUMENT.format(text=t)}] for t in texts
    ]
    assert got.shape == (3, 3072)
    assert max(float(got[i] @ got[j]) for i in range(3) for j in range(i + 1, 3)) < 0.9  # three different vectors
    # What the trap would have produced: one content with three parts is ONE vector.
    merged = requests.post(
        mmembed_emulator.url + BATCH_PATH,
        json={"requests": [{"model": f"models/{MODEL}", "content": {"parts": [{"text": t} for t in texts]}}]},
        headers={"x-goog-api-key": "k"},
        timeout=10,
    )
    assert merged.status_code == 200 and len(merged.json()["embeddings"]) == 1


def test_250_texts_take_3_requests_of_at_most_100(mmembed_emulator: Emulator) -> None:
    texts = [f"note number {i} about the sea" for i in range(250)]
    with gemini(mmembed_emulator) as emb:
        got = emb.embed(texts)
    sizes = sorted(len(r.json["requests"]) for r in mmembed_emulator.requests)
    assert sizes == [50, 100, 100] and got.shape == (250, 3072)
    assert non_2xx(mmembed_emulator) == {}


def test_dimensions_768_on_the_wire_for_every_modality(mmembed_emulator: Emulator) -> None:
    with gemini(mmembed_emulator, dimensions=768) as emb:
        got = emb.embed(["a red car", colour_photo("red", size=(200, 200))])
    assert got.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    (sent,) = mmembed_emulator.requests
    assert [r["outputDimensionality"] for r in sent.json["requests"]] == [768, 768]


@pytest.mark.parametrize("dims", [64, 3073])
def test_dimensions_outside_128_3072_are_refused_before_sending(mmembed_emulator: Emulator, dims: int) -> None:
    with pytest.raises(ConfigurationError, match=r"128-3072|at most 3072"):
        gemini(mmembed_emulator, dimensions=dims)


def test_embed_query_sends_the_query_prefix_and_no_task_type(mmembed_emulator: Emulator) -> None:
    with gemini(mmembed_emulator) as emb:
        (query,) = emb.embed_query(["something red"])
        photos = emb.embed([colour_photo(c, size=(200, 200)) for c in ("blue", "red", "green")])
    request = mmembed_emulator.requests[0].json["requests"][0]
    assert request["content"]["parts"] == [{"text": "task: search result | query: something red"}]
    assert "taskType" not in request and "title" not in request
    assert int(np.argmax(photos @ query)) == 1  # the prefixed query still finds the red photo


def test_image_queries_go_bare_and_share_the_cache_with_documents(
    mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    photo = png_bytes(colour_photo("red", size=(200, 200)))
    with gemini(mmembed_emulator, cache=tmp_path / "c.db") as emb:
        doc = emb.embed([photo])
        query = emb.embed_query([photo])
    (sent,) = mmembed_emulator.requests  # the query image came from the cache: same bare content
    (part,) = sent.json["requests"][0]["content"]["parts"]
    assert set(part) == {"inlineData"}
    np.testing.assert_array_equal(doc, query)


def test_the_smaller_modality_gap_keeps_colours_together(mmembed_emulator: Emulator) -> None:
    """Natively multimodal: a text and a photo of its colour are nearer than two unrelated texts."""
    with gemini(mmembed_emulator) as emb:
        red_text, sea_text, red_photo = emb.embed(["a red car", "the blue sea", colour_photo("red", size=(200, 200))])
    assert float(red_text @ red_photo) > float(red_text @ sea_text)
    with Embedder("jina", base_url=mmembed_emulator.url, api_key="k") as jina:  # CLIP-style: the gap wins
        j_red, j_sea, j_photo = jina.embed(["a red car", "the blue sea", colour_photo("red", size=(200, 200))])
    assert float(j_red @ j_photo) < float(j_red @ j_sea)


def test_key_in_header_never_in_url_repr_or_errors(mmembed_emulator_factory: Callable[..., Emulator]) -> None:
    emu = mmembed_emulator_factory(api_keys=["another-key"])
    emb = gemini(emu)
    assert CANARY_KEY not in repr(emb)
    with pytest.raises(AuthenticationError) as info:
        emb.embed(["a"])
    (sent,) = emu.requests
    assert sent.headers["x-goog-api-key"] == CANARY_KEY
    assert sent.query == {} and CANARY_KEY not in sent.path
    assert CANARY_KEY not in str(info.value) and CANARY_KEY not in repr(info.value)
    assert CANARY_KEY not in (info.value.body or "")


def test_api_key_invalid_is_an_authentication_error(mmembed_emulator_factory: Callable[..., Emulator]) -> None:
    emu = mmembed_emulator_factory(api_keys=["good"])
    with pytest.raises(AuthenticationError) as info, gemini(emu, max_retries=3) as emb:
        emb.embed(["a"])
    assert info.value.status == 400 and "API key not valid" in str(info.value)
    assert len(emu.requests) == 1  # never retried
    body = emu.requests[0]
    assert body.status == 400


def test_retry_info_delay_is_honoured(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=429, retry_after=1.5), provider="gemini")
    with gemini(mmembed_emulator, max_retries=1) as emb:
        started = time.monotonic()
        got = emb.embed(["a red car"])
        waited = time.monotonic() - started
    assert got.shape == (1, 3072)
    assert waited >= 1.4  # RetryInfo's 1.5 s, not the 0-0.5 s jittered back-off
    first = mmembed_emulator.requests[0]
    assert first.status == 429


def test_retry_info_reaches_the_rate_limit_error(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=429, retry_after=47), provider="gemini")
    with pytest.raises(RateLimitError) as info, gemini(mmembed_emulator) as emb:
        emb.embed(["a"])
    assert info.value.retry_after == 47.0
    assert "RESOURCE_EXHAUSTED" in str(info.value)


def test_the_emulators_429_has_retry_info_and_no_retry_after_header(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject(Fault("status", status=429, retry_after=1.5), provider="gemini")
    r = requests.post(mmembed_emulator.url + BATCH_PATH, json={}, headers={"x-goog-api-key": "k"}, timeout=10)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    error = r.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and "Please retry in 1.5s" in error["message"]
    retry = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]


@pytest.mark.parametrize(
    ("delay", "seconds"), [("47s", 47.0), ("1.5s", 1.5), ("0.25s", 0.25), ("soon", None), (12, None)]
)
def test_retry_delay_parsing(delay: object, seconds: float | None) -> None:
    response = requests.Response()
    response.status_code = 429
    body = {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}
    response._content = __import__("json").dumps(body).encode()
    assert _google.retry_delay(response) == seconds


def test_other_400_is_a_provider_error_with_the_message(mmembed_emulator: Emulator) -> None:
    with pytest.raises(ProviderError) as info, gemini(mmembed_emulator, model="no-such-model") as emb:
        emb.embed(["a"])
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.status == 404 and "models/no-such-model is not found" in str(info.value)
    mmembed_emulator.inject(Fault("status", status=400), provider="gemini")
    with pytest.raises(ProviderError) as bad, gemini(mmembed_emulator, max_retries=3) as emb:
        emb.embed(["a"])
    assert type(bad.value) is ProviderError and bad.value.status == 400
    assert "INVALID_ARGUMENT: Bad Request (injected by the emulator)" in str(bad.value)


def test_gemini_embedding_001_takes_task_type_and_refuses_images(mmembed_emulator: Emulator) -> None:
    with gemini(mmembed_emulator, model="gemini-embedding-001") as emb:
        emb.embed(["a red car"])
        emb.embed_query(["red"])
        with pytest.raises(InputError) as info:
            emb.embed(["a text", colour_photo("red", size=(50, 50))])
    assert info.value.index == 1
    assert "gemini-embedding-001 embeds text only" in str(info.value) and "gemini-embedding-2" in str(info.value)
    doc, query = (r.json["requests"][0] for r in mmembed_emulator.requests[:2])
    assert doc["taskType"] == "RETRIEVAL_DOCUMENT" and doc["content"]["parts"] == [{"text": "a red car"}]
    assert query["taskType"] == "RETRIEVAL_QUERY" and query["content"]["parts"] == [{"text": "red"}]
    assert doc["model"] == "models/gemini-embedding-001"


def test_images_batch_in_small_groups(mmembed_emulator: Emulator) -> None:
    photos = [colour_photo("red", size=(100, 100), seed=i) for i in range(40)]
    with gemini(mmembed_emulator) as emb:
        got = emb.embed(photos)
    assert got.shape == (40, 3072)
    assert sorted(len(r.json["requests"]) for r in mmembed_emulator.requests) == [8, 16, 16]


def test_wrong_count_and_malformed_answers_are_retried(mmembed_emulator: Emulator) -> None:
    mmembed_emulator.inject("wrong_count", provider="gemini")
    mmembed_emulator.inject("malformed", provider="gemini")
    with gemini(mmembed_emulator, max_retries=2) as emb:
        got = emb.embed(["a", "b"])
    assert got.shape == (2, 3072) and len(mmembed_emulator.requests) == 3


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        Embedder("gemini")
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google")
    emb = Embedder("gemini")
    assert emb.provider.api_key_env_var == "GOOGLE_API_KEY"
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini")
    assert Embedder("gemini").provider.api_key_env_var == "GEMINI_API_KEY"


# -- Vertex gemini-embedding-2 ----------------------------------------------------------------------------


def test_vertex_one_request_per_item_concurrently_in_global(
    mmembed_emulator_factory: Callable[..., Emulator],
) -> None:
    emu = mmembed_emulator_factory(latency=0.2)
    items: list[object] = ["a red car", colour_photo("blue", size=(300, 200)), "the sea", "grass", "a banana"]
    with vertex(emu, project_id="proj", max_concurrency=4) as emb:
        got = emb.embed(items)
    assert got.shape == (5, 3072)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    sent = emu.requests
    assert len(sent) == len(items) and non_2xx(emu) == {}
    assert emu.stats.max_in_flight >= 2
    path = f"/v1/projects/proj/locations/global/publishers/google/models/{MODEL}:embedContent"
    assert {r.path for r in sent} == {path}
    for r in sent:
        assert set(r.json) == {"content", "embedContentConfig"}
        assert r.json["embedContentConfig"] == {"outputDimensionality": 3072}
        assert len(r.json["content"]["parts"]) == 1
        assert r.headers["x-goog-api-key"] == CANARY_KEY


def test_vertex_default_limits_overlap_calls_even_with_short_latency(
    mmembed_emulator_factory: Callable[..., Emulator],
) -> None:
    emu = mmembed_emulator_factory(latency=0.05)
    with vertex(emu, project_id="proj") as emb:  # default concurrency (8) and rate (600/min, the first 8 at once)
        assert emb.provider.concurrency == 8
        emb.embed([f"text {i}" for i in range(8)])
    assert len(emu.requests) == 8 and emu.stats.max_in_flight >= 4


def test_vertex_refuses_its_text_embedding_models_before_sending(mmembed_emulator: Emulator) -> None:
    emu = mmembed_emulator
    for model in ("gemini-embedding-001", "text-embedding-005", "text-multilingual-embedding-002"):
        with pytest.raises(ConfigurationError, match=rf"{model} is one of Vertex's text-embedding models") as err:
            vertex(emu, model=model, project_id="p")
        # the registry says who else hosts it: the Gemini API lists gemini-embedding-001 only
        assert str(err.value).endswith("Embedder('gemini', model='gemini-embedding-001')" if "gemini" in model
                                       else "multimodalembedding@001 here")
    assert emu.requests == []
    with vertex(emu, model="multimodalembedding@002", project_id="p") as later:  # an unknown model passes through
        assert later.provider.family.model == "multimodalembedding@002"


def test_vertex_gemini_defaults_to_the_global_host() -> None:
    emb = Embedder("vertex", model=MODEL, api_key="k", project_id="p")
    assert emb.provider.endpoint == (
        "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/models/"
        "gemini-embedding-2:embedContent"
    )
    eu = Embedder("vertex", model=MODEL, api_key="k", project_id="p", location="europe-west4")
    assert eu.provider.endpoint.startswith("https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/")
    assert Embedder("vertex", model=MODEL, api_key="k", project_id="p", location="eu").provider.base_url == (
        "https://aiplatform.eu.rep.googleapis.com"
    )
    legacy = Embedder("vertex", api_key="k", project_id="p")
    assert legacy.provider.endpoint.startswith("https://us-central1-aiplatform.googleapis.com/")
    assert legacy.provider.endpoint.endswith("multimodalembedding@001:predict")


def test_vertex_location_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-east5")
    emb = Embedder("vertex", model=MODEL, api_key="k", project_id="p")
    assert "/locations/us-east5/" in emb.provider.endpoint


def test_vertex_express_mode_with_a_key_and_no_project(mmembed_emulator: Emulator) -> None:
    with vertex(mmembed_emulator) as emb:
        got = emb.embed(["a red car"])
    (sent,) = mmembed_emulator.requests
    assert sent.path == f"/v1beta1/publishers/google/models/{MODEL}:embedContent"
    assert got.shape == (1, 3072)
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        Embedder("vertex", api_key="k")  # multimodalembedding@001 still needs a project


def test_vertex_bearer_tokens_work(mmembed_emulator: Emulator) -> None:
    class Creds:
        valid, token = True, "ya29-test-token"

    emb = Embedder("vertex", model=MODEL, base_url=mmembed_emulator.url, project_id="p", credentials=Creds())
    got = emb.embed(["a red car"], )
    (sent,) = mmembed_emulator.requests
    assert sent.headers["authorization"] == "Bearer ya29-test-token" and got.shape == (1, 3072)


def test_vertex_query_prefix_and_dimensions(mmembed_emulator: Emulator) -> None:
    with vertex(mmembed_emulator, project_id="p", dimensions=768) as emb:
        (query,) = emb.embed_query(["something red"])
    (sent,) = mmembed_emulator.requests
    assert sent.json == {
        "content": {"parts": [{"text": "task: search result | query: something red"}]},
        "embedContentConfig": {"outputDimensionality": 768},
    }
    assert query.shape == (768,)


def test_vertex_answer_shape(mmembed_emulator: Emulator) -> None:
    r = requests.post(
        mmembed_emulator.url + f"/v1/projects/p/locations/global/publishers/google/models/{MODEL}:embedContent",
        json={"content": {"parts": [{"text": "a red car"}, {"inlineData": {
            "mimeType": "image/png", "data": base64.b64encode(png_bytes(colour_photo("red", size=(64, 64)))).decode()
        }}]}},
        headers={"x-goog-api-key": "k"},
        timeout=10,
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"embedding", "usageMetadata", "truncated"} and body["truncated"] is False
    assert len(body["embedding"]["values"]) == 3072
    details = {d["modality"]: d["tokenCount"] for d in body["usageMetadata"]["promptTokensDetails"]}
    assert details == {"TEXT": 3, "IMAGE": 258} and body["usageMetadata"]["promptTokenCount"] == 261


def test_vertex_usage_is_summed_by_modality(mmembed_emulator: Emulator) -> None:
    with vertex(mmembed_emulator, project_id="p") as emb:
        emb.embed(["a red car", colour_photo("red", size=(1600, 1200))])
        # 1024x768 after shrinking: two 768-px tiles by the emulator's (Gemini vision) rule; the live API says its own.
        assert emb.provider.usage == {"TEXT": 3 + 6, "IMAGE": 516}  # "title: none | text: " adds 6 tokens


def test_vertex_auth_error_and_retry_info(mmembed_emulator_factory: Callable[..., Emulator]) -> None:
    emu = mmembed_emulator_factory(api_keys=["good"])
    with pytest.raises(AuthenticationError), vertex(emu, project_id="p") as emb:
        emb.embed(["a"])
    emu.inject(Fault("status", status=429, retry_after=33), provider="vertex")
    with pytest.raises(RateLimitError) as info, vertex(emu, project_id="p", api_key="good") as emb:
        emb.embed(["a"])
    assert info.value.retry_after == 33.0


# -- the emulator's strictness (what a held-out stub would refuse too) --------------------------------------


def post_batch(emu: Emulator, requests_: list[dict[str, Any]], model: str = MODEL) -> requests.Response:
    return requests.post(
        emu.url + f"/v1beta/models/{model}:batchEmbedContents",
        json={"requests": requests_}, headers={"x-goog-api-key": "k"}, timeout=10,
    )


def text_request(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": f"models/{MODEL}", "content": {"parts": [{"text": text}]}, **extra}


def png_part(fmt: str = "PNG", mime: str = "image/png") -> dict[str, Any]:
    buf = io.BytesIO()
    colour_photo("red", size=(32, 32)).save(buf, fmt)
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(buf.getvalue()).decode()}}


@pytest.mark.parametrize(
    ("requests_", "message"),
    [
        ([text_request()] * 101, "at most 100 requests"),
        ([{"content": {"parts": [{"text": "x"}]}}], "must match the model in the URL"),
        ([text_request(model="models/gemini-embedding-001")], "must match the model in the URL"),
        ([text_request(embedContentConfig={"outputDimensionality": 8})], "not of the Gemini API"),
        ([text_request(autoTruncate=True)], "not of the Gemini API"),
        ([text_request(colour="red")], 'Unknown name "colour"'),
        ([text_request(outputDimensionality=64)], "outputDimensionality"),
        ([text_request(outputDimensionality=4096)], "outputDimensionality"),
        ([text_request(taskType="RETRIEVAL_QUERY")], "does not support taskType"),
        ([{"model": f"models/{MODEL}", "content": {"parts": []}}], "non-empty"),
        ([{"model": f"models/{MODEL}", "content": {"parts": [png_part("WEBP", "image/webp")]}}], "not supported"),
        ([{"model": f"models/{MODEL}", "content": {"parts": [png_part()] * 7}}], "at most 6 images"),
        ([{"model": f"models/{MODEL}", "content": {"parts": [png_part("PNG", "image/jpeg")]}}], "unsupported image"),
    ],
)
def test_the_emulator_refuses_what_the_api_refuses(
    mmembed_emulator: Emulator, requests_: list[dict[str, Any]], message: str
) -> None:
    r = post_batch(mmembed_emulator, requests_)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "status", "details"}
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and message in error["message"]


def test_the_emulator_accepts_snake_case_and_single_embed_content(mmembed_emulator: Emulator) -> None:
    snake = {"model": f"models/{MODEL}", "content": {"parts": [{"inline_data": {
        "mime_type": "image/png", "data": png_part()["inlineData"]["data"]}}]}, "output_dimensionality": 256}
    assert len(post_batch(mmembed_emulator, [snake]).json()["embeddings"][0]["values"]) == 256
    one = requests.post(
        mmembed_emulator.url + f"/v1beta/models/{MODEL}:embedContent",
        json={"content": {"parts": [{"text": "hi"}]}}, headers={"x-goog-api-key": "k"}, timeout=10,
    )
    assert one.status_code == 200 and len(one.json()["embedding"]["values"]) == 3072
    preview = post_batch(
        mmembed_emulator,
        [{"model": "models/gemini-embedding-2-preview", "content": {"parts": [{"text": "x"}]},
          "taskType": "RETRIEVAL_DOCUMENT", "title": "t"}],
        model="gemini-embedding-2-preview",
    )
    assert preview.status_code == 200  # accepted and ignored on the preview, as Google's SDK test sends it


def test_the_emulator_auth_answers(mmembed_emulator_factory: Callable[..., Emulator]) -> None:
    emu = mmembed_emulator_factory(api_keys=["good"])
    url = emu.url + BATCH_PATH
    none = requests.post(url, json={"requests": [text_request()]}, timeout=10)
    bad = requests.post(url, json={"requests": [text_request()]}, headers={"x-goog-api-key": "bad"}, timeout=10)
    ok = requests.post(url + "?key=good", json={"requests": [text_request()]}, timeout=10)
    assert none.status_code == 403 and none.json()["error"]["status"] == "PERMISSION_DENIED"
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (f"/v1/projects/p/locations/global/publishers/google/models/{MODEL}:predict",
         {"instances": [{"text": "x"}]}, 400, "use :embedContent"),
        (f"/v1/projects/p/locations/global/publishers/google/models/{MODEL}:embedContent",
         {"instances": [{"text": "x"}]}, 400, "instances"),
        (f"/v1/projects/p/locations/global/publishers/google/models/{MODEL}:embedContent",
         {"requests": [{"content": {"parts": [{"text": "x"}]}}]}, 400, "requests"),
        (f"/v1/projects/p/locations/global/publishers/google/models/{MODEL}:batchEmbedContents",
         {"requests": []}, 404, ""),
        (f"/v1/projects/p/locations/global/publishers/google/models/{MODEL}:embedContent",
         {"content": {"parts": [{"text": "x"}]}, "embedContentConfig": {"outputDimensionality": 100}}, 400,
         "outputDimensionality"),
        ("/v1/projects/p/locations/global/publishers/google/models/multimodalembedding@001:embedContent",
         {"content": {"parts": [{"text": "x"}]}}, 400, "use :predict"),
    ],
)
def test_the_vertex_emulator_refuses(
    mmembed_emulator: Emulator, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    r = requests.post(mmembed_emulator.url + path, json=body, headers={"x-goog-api-key": "k"}, timeout=10)
    assert r.status_code == status, r.text
    assert message in r.text


def test_the_vertex_emulator_truncates_long_texts(mmembed_emulator: Emulator) -> None:
    path = f"/v1beta1/projects/p/locations/global/publishers/google/models/{MODEL}:embedContent"
    long = {"content": {"parts": [{"text": "word " * 9000}]}}
    r = requests.post(mmembed_emulator.url + path, json=long, headers={"x-goog-api-key": "k"}, timeout=10)
    assert r.status_code == 200 and r.json()["truncated"] is True
    refused = {**long, "embedContentConfig": {"autoTruncate": False}}
    r = requests.post(mmembed_emulator.url + path, json=refused, headers={"x-goog-api-key": "k"}, timeout=10)
    assert r.status_code == 400


def test_one_content_with_several_parts_is_their_mean(mmembed_emulator: Emulator) -> None:
    parts = [{"text": "a red car"}, png_part()]
    (agg,) = (e["values"] for e in post_batch(
        mmembed_emulator, [{"model": f"models/{MODEL}", "content": {"parts": parts}}]).json()["embeddings"])
    text = mmembed_emulator.vector("gemini", MODEL, text="a red car")
    image = mmembed_emulator.vector(
        "gemini", MODEL, image=base64.b64decode(png_part()["inlineData"]["data"])
    )
    mean = (text + image) / np.linalg.norm(text + image)
    np.testing.assert_allclose(agg, mean, atol=1e-6)


# -- settings, gs://, pickling ------------------------------------------------------------------------------


def test_prompt_templates_are_settings_and_part_of_the_cache_key(mmembed_emulator: Emulator, tmp_path: Path) -> None:
    cache = tmp_path / "c.db"
    with gemini(mmembed_emulator, cache=cache) as emb:
        emb.embed_query(["red"])
    custom = "task: question answering | query: {text}"
    templates = {"query_template": custom, "document_template": "title: x | text: {text}"}
    with gemini(mmembed_emulator, cache=cache, **templates) as emb:
        emb.embed_query(["red"])  # another template: another vector, so the cache does not answer
        emb.embed(["red"])
    parts = parts_of(mmembed_emulator)
    assert parts == [
        {"text": "task: search result | query: red"},
        {"text": "task: question answering | query: red"},
        {"text": "title: x | text: red"},
    ]
    with pytest.raises(ConfigurationError, match="query_template"):
        gemini(mmembed_emulator, query_template="no placeholder")
    with pytest.raises(ConfigurationError, match="multimodalembedding@001 takes no query_template="):
        Embedder("vertex", api_key="k", project_id="p", query_template="q: {text}")  # @001 has no prompts


def test_gs_uris_go_to_vertex_gemini_as_file_data_and_are_refused_by_the_gemini_api(
    mmembed_emulator: Emulator,
) -> None:
    with vertex(mmembed_emulator, project_id="p") as emb:
        got = emb.embed([ImageSource("gs://bucket/photos/red.png")])
    (sent,) = mmembed_emulator.requests
    assert sent.json["content"]["parts"] == [{"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/photos/red.png"}}]
    assert got.shape == (1, 3072)
    with vertex(mmembed_emulator, project_id="p") as emb, pytest.raises(InputError, match=r"\.png or \.jpg"):
        emb.embed([ImageSource("gs://bucket/photos/red.webp")])
    with gemini(mmembed_emulator) as emb, pytest.raises(InputError, match="gs://") as info:
        emb.embed(["a", ImageSource("gs://bucket/red.png")])
    assert info.value.index == 1


def test_a_gemini_embedder_pickles_without_its_key(mmembed_emulator: Emulator) -> None:
    import pickle

    emb = gemini(mmembed_emulator, dimensions=256)
    data = pickle.dumps(emb)
    assert CANARY_KEY.encode() not in data
    assert emb.config()["api_key_env_var"] == "GEMINI_API_KEY" and emb.config()["dimensions"] == 256
