"""The offline emulator (mmembed.testing): wire formats, limits, the fake space, knobs, faults and fixtures.

Everything goes through real HTTP with ``requests``, and the facts (paths, fields, statuses, error shapes) are
pinned here in the test bodies.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

import mmembed.testing as testing
from mmembed.testing import COLOURS, Emulator, Fault, RecordedRequest, colour_photo, emulator_vector
from mmembed.testing.__main__ import main, serve_forever

pytest_plugins = ("pytester",)

NOMIC_AUTH = {"Authorization": "Bearer nk-test"}
JINA_AUTH = {"Authorization": "Bearer jina_test"}
VERTEX_AUTH = {"x-goog-api-key": "AIza-test"}
NOMIC_TEXT = "/v1/embedding/text"
NOMIC_IMAGE = "/v1/embedding/image"
JINA = "/v1/embeddings"
VERTEX_MODEL = "multimodalembedding@001"

Factory = Callable[..., Emulator]


def vertex_path(model: str = VERTEX_MODEL) -> str:
    return f"/v1/projects/demo-project/locations/us-central1/publishers/google/models/{model}:predict"


def encode(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def cos(a: Any, b: Any) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # never route loopback traffic through a proxy from the environment
        yield session


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    """One 480x360 JPEG per colour."""
    return {name: encode(colour_photo(name, (480, 360))) for name in COLOURS}


@pytest.fixture
def image_host() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A tiny local web server: put bytes in the dict under a path, fetch them at base + path."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()
    thread.join()


# --- Nomic -----------------------------------------------------------------------------------------------


def test_nomic_text_answers_in_the_real_shape_and_records_the_request(
    mmembed_emulator: Emulator, http: requests.Session
) -> None:
    body = {"texts": ["a red car", "blue sky"], "model": "nomic-embed-text-v1.5", "task_type": "search_query"}
    r = http.post(mmembed_emulator.url + NOMIC_TEXT, json=body, headers=NOMIC_AUTH)

    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["x-request-id"]
    payload = r.json()
    assert set(payload) == {"embeddings", "model", "usage"}
    assert payload["model"] == "nomic-embed-text-v1.5"
    assert payload["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert [len(e) for e in payload["embeddings"]] == [768, 768]
    assert np.linalg.norm(payload["embeddings"][0]) == pytest.approx(1.0, abs=1e-6)
    expected = mmembed_emulator.vector("nomic", "nomic-embed-text-v1.5", text="a red car", task="search_query")
    assert payload["embeddings"][0] == expected.tolist()  # exact: same rounding as the wire

    (rec,) = mmembed_emulator.requests
    assert isinstance(rec, RecordedRequest)
    assert (rec.provider, rec.method, rec.path, rec.status) == ("nomic", "POST", NOMIC_TEXT, 200)
    assert rec.json == body
    assert rec.headers["authorization"] == "Bearer nk-test"
    assert rec.body_size == len(json.dumps(body))


def test_nomic_dimensionality_is_a_renormalised_prefix(mmembed_emulator: Emulator, http: requests.Session) -> None:
    def embed(**extra: Any) -> list[float]:
        body = {"texts": ["a red car"], "model": "nomic-embed-text-v1.5", **extra}
        r = http.post(mmembed_emulator.url + NOMIC_TEXT, json=body, headers=NOMIC_AUTH)
        assert r.status_code == 200, r.text
        vector: list[float] = r.json()["embeddings"][0]
        return vector

    full, short = np.array(embed()), np.array(embed(dimensionality=64))
    assert short.shape == (64,)
    assert np.allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-7)
    assert short.tolist() == mmembed_emulator.vector(
        "nomic", "nomic-embed-text-v1.5", text="a red car", dimensions=64
    ).tolist()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"texts": [f"t{i}" for i in range(11)], "model": "nomic-embed-text-v1.5"}, 400, None),
        ({"texts": [], "model": "nomic-embed-text-v1.5"}, 422, "texts"),
        ({"texts": ["x"], "model": "nomic-embed-text-v1.5", "task_type": "search"}, 422, "task_type"),
        ({"texts": ["x"], "model": "nomic-embed-text-v1.5", "dimensionality": 32}, 422, "dimensionality"),
        ({"texts": ["x"], "model": "nomic-embed-text-v1.5", "dimensionality": 769}, 422, "dimensionality"),
        ({"texts": ["x"], "model": "nomic-embed-text-v1", "dimensionality": 256}, 422, "dimensionality"),
        ({"texts": ["x"], "model": "nomic-embed-text-v9"}, 400, None),
        ({"texts": ["x"], "model": "nomic-embed-vision-v1.5"}, 400, None),
    ],
)
def test_nomic_text_refusals(
    mmembed_emulator: Emulator, http: requests.Session, body: dict[str, Any], status: int, field: str | None
) -> None:
    r = http.post(mmembed_emulator.url + NOMIC_TEXT, json=body, headers=NOMIC_AUTH)
    assert r.status_code == status
    detail = r.json()["detail"]
    if field is None:
        assert isinstance(detail, str) and detail
    else:  # FastAPI's validation shape
        assert detail[0]["loc"] == ["body", field]
        assert set(detail[0]) == {"loc", "msg", "type"}


def test_nomic_text_accepts_ten(mmembed_emulator: Emulator, http: requests.Session) -> None:
    body = {"texts": [f"t{i}" for i in range(10)], "model": "nomic-embed-text-v1"}
    r = http.post(mmembed_emulator.url + NOMIC_TEXT, json=body, headers=NOMIC_AUTH)
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 10


def test_nomic_auth(mmembed_emulator_factory: Factory, http: requests.Session) -> None:
    emu = mmembed_emulator_factory(api_keys={"nk-good"})
    body = {"texts": ["x"], "model": "nomic-embed-text-v1.5"}
    missing = http.post(emu.url + NOMIC_TEXT, json=body)
    wrong = http.post(emu.url + NOMIC_TEXT, json=body, headers={"Authorization": "Bearer nk-bad"})
    good = http.post(emu.url + NOMIC_TEXT, json=body, headers={"Authorization": "Bearer nk-good"})
    assert (missing.status_code, wrong.status_code, good.status_code) == (401, 401, 200)
    assert isinstance(missing.json()["detail"], str)
    assert [r.status for r in emu.requests] == [401, 401, 200]


def test_nomic_image_multipart_with_several_images_parts(
    mmembed_emulator: Emulator, http: requests.Session, photos: dict[str, bytes]
) -> None:
    png = encode(colour_photo("green", (300, 200)), "PNG")
    webp = encode(colour_photo("blue", (300, 200)), "WEBP")
    parts = [
        ("images", ("a.jpg", photos["red"], "image/jpeg")),
        ("images", ("b.png", png, "image/png")),
        ("images", ("c.webp", webp, "image/webp")),
    ]
    r = http.post(
        mmembed_emulator.url + NOMIC_IMAGE, data={"model": "nomic-embed-vision-v1.5"}, files=parts,
        headers=NOMIC_AUTH,
    )

    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["usage"] == {"prompt_tokens": 3 * 196, "total_tokens": 3 * 196}
    assert [len(e) for e in payload["embeddings"]] == [768] * 3
    for sent, got in zip((photos["red"], png, webp), payload["embeddings"], strict=True):
        assert got == mmembed_emulator.vector("nomic", "nomic-embed-vision-v1.5", image=sent).tolist()
    (rec,) = mmembed_emulator.requests
    assert rec.form == {"model": ["nomic-embed-vision-v1.5"]}
    assert [(name, filename, ctype) for name, filename, ctype, _ in rec.files] == [
        ("images", "a.jpg", "image/jpeg"), ("images", "b.png", "image/png"), ("images", "c.webp", "image/webp")
    ]
    assert rec.files[1][3] == png


@pytest.mark.parametrize("data", [b"not an image at all", b"GIF"])
def test_nomic_image_refuses_undecodable_and_gif(
    mmembed_emulator: Emulator, http: requests.Session, data: bytes
) -> None:
    if data == b"GIF":
        data = encode(colour_photo("red", (40, 30)), "GIF")
    r = http.post(
        mmembed_emulator.url + NOMIC_IMAGE, data={"model": "nomic-embed-vision-v1.5"},
        files=[("images", ("x", data, "application/octet-stream"))], headers=NOMIC_AUTH,
    )
    assert r.status_code == 400
    assert isinstance(r.json()["detail"], str)


def test_nomic_image_caps_at_512(mmembed_emulator: Emulator, http: requests.Session) -> None:
    tiny = encode(Image.new("RGB", (2, 2), (255, 0, 0)), "PNG")
    parts = [("images", (f"{i}.png", tiny, "image/png")) for i in range(513)]
    r = http.post(
        mmembed_emulator.url + NOMIC_IMAGE, data={"model": "nomic-embed-vision-v1.5"}, files=parts,
        headers=NOMIC_AUTH,
    )
    assert r.status_code == 400


def test_nomic_image_urls_are_fetched_by_the_emulator(
    mmembed_emulator: Emulator, http: requests.Session, image_host: tuple[str, dict[str, bytes]]
) -> None:
    base, files = image_host
    files["/red.png"] = encode(colour_photo("red", (200, 150)), "PNG")
    files["/cyan.png"] = encode(colour_photo("cyan", (200, 150)), "PNG")
    form = {"model": "nomic-embed-vision-v1.5", "urls": [base + "/red.png", base + "/cyan.png"]}
    r = http.post(mmembed_emulator.url + NOMIC_IMAGE, data=form, headers=NOMIC_AUTH)

    assert r.status_code == 200, r.text
    embeddings = r.json()["embeddings"]
    cyan = mmembed_emulator.vector("nomic", "nomic-embed-vision-v1.5", image=files["/cyan.png"])
    assert embeddings[1] == cyan.tolist()
    assert mmembed_emulator.requests[0].form["urls"] == form["urls"]

    missing = http.post(mmembed_emulator.url + NOMIC_IMAGE, data={**form, "urls": [base + "/nope.png"]},
                        headers=NOMIC_AUTH)
    remote = http.post(mmembed_emulator.url + NOMIC_IMAGE, data={**form, "urls": ["http://192.0.2.1/x.png"]},
                       headers=NOMIC_AUTH)
    assert (missing.status_code, remote.status_code) == (400, 400)
    assert "loopback" in remote.json()["detail"]


# --- Jina ------------------------------------------------------------------------------------------------


def test_jina_mixed_input_shuffled_data_with_right_indexes(
    mmembed_emulator: Emulator, http: requests.Session, photos: dict[str, bytes]
) -> None:
    inputs = [
        "a red car",
        {"text": "blue sky"},
        {"image": b64(photos["red"])},
        {"image": "data:image/jpeg;base64," + b64(photos["blue"])},
        {"bytes": b64(photos["green"])},  # legacy field
    ]
    r = http.post(mmembed_emulator.url + JINA, json={"model": "jina-clip-v2", "input": inputs}, headers=JINA_AUTH)

    assert r.status_code == 200, r.text
    payload = r.json()
    assert (payload["model"], payload["object"]) == ("jina-clip-v2", "list")
    assert set(payload["usage"]) == {"total_tokens", "prompt_tokens"}
    indexes = [d["index"] for d in payload["data"]]
    assert sorted(indexes) == [0, 1, 2, 3, 4] and indexes != sorted(indexes)
    by_index = {d["index"]: d["embedding"] for d in payload["data"]}
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 1024 for d in payload["data"])
    assert by_index[1] == mmembed_emulator.vector("jina", "jina-clip-v2", text="blue sky").tolist()
    assert by_index[3] == mmembed_emulator.vector("jina", "jina-clip-v2", image=photos["blue"]).tolist()
    assert by_index[4] == mmembed_emulator.vector("jina", "jina-clip-v2", image=photos["green"]).tolist()


def test_jina_image_urls_and_legacy_url_field(
    mmembed_emulator: Emulator, http: requests.Session, image_host: tuple[str, dict[str, bytes]]
) -> None:
    base, files = image_host
    files["/p.png"] = encode(colour_photo("pink", (120, 90)), "PNG")
    body = {"input": [{"image": base + "/p.png"}, {"url": base + "/p.png"}]}
    r = http.post(mmembed_emulator.url + JINA, json=body, headers=JINA_AUTH)
    assert r.status_code == 200, r.text
    first, second = (d["embedding"] for d in sorted(r.json()["data"], key=lambda d: d["index"]))
    assert first == second == mmembed_emulator.vector("jina", "jina-clip-v2", image=files["/p.png"]).tolist()

    bad = http.post(mmembed_emulator.url + JINA, json={"input": [{"image": "bm90IGFuIGltYWdl"}]}, headers=JINA_AUTH)
    assert bad.status_code == 400 and bad.json()["code"]


@pytest.mark.parametrize(("model", "limit"), [("jina-clip-v2", 2048), ("jina-embeddings-v4", 512)])
def test_jina_input_cap(mmembed_emulator: Emulator, http: requests.Session, model: str, limit: int) -> None:
    too_many = http.post(mmembed_emulator.url + JINA, json={"model": model, "input": ["x"] * (limit + 1)},
                         headers=JINA_AUTH)
    assert too_many.status_code == 400
    assert too_many.json()["detail"] == f"input length is larger than the largest allowed size {limit}"
    body = {"model": model, "input": ["x"] * limit, "dimensions": 8}  # small vectors keep the answer small
    at_cap = http.post(mmembed_emulator.url + JINA, json=body, headers=JINA_AUTH)
    assert at_cap.status_code == 200 and len(at_cap.json()["data"]) == limit


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"model": "jina-clip-v2", "task": "retrieval.query"}, 200),
        ({"model": "jina-clip-v2", "task": "retrieval.passage"}, 422),
        ({"model": "jina-clip-v2", "dimensions": 64}, 200),
        ({"model": "jina-clip-v2", "dimensions": 1025}, 422),
        ({"model": "jina-clip-v1", "task": "retrieval.query"}, 422),
        ({"model": "jina-clip-v1", "dimensions": 64}, 422),
        ({"model": "jina-embeddings-v4", "task": "retrieval.passage", "dimensions": 2048}, 200),
        ({"model": "jina-embeddings-v4", "task": "code.query"}, 200),
        ({"model": "jina-embeddings-v4", "task": "classification"}, 422),
        ({"model": "jina-clip-v9"}, 400),
    ],
)
def test_jina_task_and_dimensions_rules(
    mmembed_emulator: Emulator, http: requests.Session, extra: dict[str, Any], status: int
) -> None:
    r = http.post(mmembed_emulator.url + JINA, json={"input": ["a red car"], **extra}, headers=JINA_AUTH)
    assert r.status_code == status, r.text
    if status == 200:
        expected = extra.get("dimensions") or {"jina-clip-v2": 1024, "jina-embeddings-v4": 2048}[extra["model"]]
        assert len(r.json()["data"][0]["embedding"]) == expected
    else:
        assert set(r.json()) == {"detail", "code", "request_id"}


def test_jina_auth_error_shape(mmembed_emulator: Emulator, http: requests.Session) -> None:
    r = http.post(mmembed_emulator.url + JINA, json={"input": ["x"]})
    assert r.status_code == 401
    payload = r.json()
    assert payload["code"] == "UNAUTHORIZED" and payload["detail"]
    assert payload["request_id"] == r.headers["x-request-id"]


def test_jina_unnormalised_vectors(mmembed_emulator_factory: Factory, http: requests.Session) -> None:
    plain, raw = mmembed_emulator_factory(), mmembed_emulator_factory(jina_unnormalized=True)

    def first(emu: Emulator, **extra: Any) -> np.ndarray:
        r = http.post(emu.url + JINA, json={"input": ["a red car"], **extra}, headers=JINA_AUTH)
        return np.array(r.json()["data"][0]["embedding"])

    unit, scaled, asked = first(plain), first(raw), first(plain, normalized=False)
    assert np.linalg.norm(unit) == pytest.approx(1.0, abs=1e-6)
    assert np.linalg.norm(scaled) > 5 and np.linalg.norm(asked) > 5
    assert cos(unit, scaled) == pytest.approx(1.0, abs=1e-6)
    assert scaled.tolist() == raw.vector("jina", "jina-clip-v2", text="a red car").tolist()


def test_jina_embedding_type_base64(mmembed_emulator: Emulator, http: requests.Session) -> None:
    body = {"input": ["a red car"], "embedding_type": "base64", "dimensions": 16}
    r = http.post(mmembed_emulator.url + JINA, json=body, headers=JINA_AUTH)
    decoded = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    expected = mmembed_emulator.vector("jina", "jina-clip-v2", text="a red car", dimensions=16)
    assert np.allclose(decoded, expected, atol=1e-7)


# --- Vertex ----------------------------------------------------------------------------------------------


def test_vertex_text_and_image_in_one_instance(
    mmembed_emulator: Emulator, http: requests.Session, photos: dict[str, bytes]
) -> None:
    body = {
        "instances": [{"text": "a red car", "image": {"bytesBase64Encoded": b64(photos["red"]),
                                                      "mimeType": "image/jpeg"}}],
        "parameters": {"dimension": 256},
    }
    r = http.post(mmembed_emulator.url + vertex_path(), json=body, headers=VERTEX_AUTH)

    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["deployedModelId"] == "emulator"
    (prediction,) = payload["predictions"]
    assert set(prediction) == {"textEmbedding", "imageEmbedding"}
    assert prediction["textEmbedding"] == mmembed_emulator.vector(
        "vertex", VERTEX_MODEL, text="a red car", dimensions=256).tolist()
    assert prediction["imageEmbedding"] == mmembed_emulator.vector(
        "vertex", VERTEX_MODEL, image=photos["red"], dimensions=256).tolist()
    assert mmembed_emulator.requests[0].path == vertex_path()


def test_vertex_auth_ways_defaults_and_gcs(mmembed_emulator: Emulator, http: requests.Session) -> None:
    url = mmembed_emulator.url + vertex_path("multimodalembedding")
    text = {"instances": [{"text": "blue"}]}
    by_query = http.post(url, params={"key": "AIza-test"}, json=text)
    by_token = http.post(url, json={"instances": [{"image": {"gcsUri": "gs://bucket/cat.png"}}]},
                         headers={"Authorization": "Bearer ya29.token"})
    assert by_query.status_code == by_token.status_code == 200
    assert len(by_query.json()["predictions"][0]["textEmbedding"]) == 1408
    assert set(by_token.json()["predictions"][0]) == {"imageEmbedding"}
    assert mmembed_emulator.requests[0].query == {"key": ["AIza-test"]}


def test_vertex_keeps_only_32_tokens_of_text(mmembed_emulator: Emulator) -> None:
    words = " ".join(f"word{i}" for i in range(40))
    cut = " ".join(f"word{i}" for i in range(32))
    assert np.array_equal(
        mmembed_emulator.vector("vertex", VERTEX_MODEL, text=words),
        mmembed_emulator.vector("vertex", VERTEX_MODEL, text=cut),
    )


@pytest.mark.parametrize(
    ("instances", "parameters", "path_model"),
    [
        ([{"text": "a"}, {"text": "b"}], None, VERTEX_MODEL),
        ([{"text": "a", "parameters": {"dimension": 128}}], None, VERTEX_MODEL),
        # video is taken (issue 12), but not with an interval under 4 s
        ([{"text": "a", "video": {"gcsUri": "gs://b/v.mp4", "videoSegmentConfig": {"intervalSec": 2}}}], None,
         VERTEX_MODEL),
        ([{"image": {"bytesBase64Encoded": "WEBP"}}], None, VERTEX_MODEL),
        ([{"text": "a"}], {"dimension": 100}, VERTEX_MODEL),
        ([{"text": "a"}], None, "textembedding-gecko@003"),
        ([], None, VERTEX_MODEL),
    ],
)
def test_vertex_refusals(
    mmembed_emulator: Emulator, http: requests.Session, instances: list[Any], parameters: Any, path_model: str
) -> None:
    if instances and instances[0].get("image") == {"bytesBase64Encoded": "WEBP"}:
        instances = [{"image": {"bytesBase64Encoded": b64(encode(colour_photo("red", (40, 30)), "WEBP"))}}]
    body: dict[str, Any] = {"instances": instances}
    if parameters is not None:
        body["parameters"] = parameters
    r = http.post(mmembed_emulator.url + vertex_path(path_model), json=body, headers=VERTEX_AUTH)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT") and error["message"]


def test_vertex_auth_failures(mmembed_emulator_factory: Factory, http: requests.Session) -> None:
    emu = mmembed_emulator_factory(api_keys=["AIza-good"])
    url, body = emu.url + vertex_path(), {"instances": [{"text": "a"}]}
    none = http.post(url, json=body)
    bad_key = http.post(url, json=body, headers={"x-goog-api-key": "AIza-bad"})
    bad_token = http.post(url, json=body, headers={"Authorization": "Bearer expired"})
    assert none.status_code == 401 and none.json()["error"]["status"] == "UNAUTHENTICATED"
    # Google answers a bad API key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert bad_token.status_code == 401


# --- Every endpoint --------------------------------------------------------------------------------------


def test_unknown_paths_and_methods(mmembed_emulator: Emulator, http: requests.Session) -> None:
    missing = http.post(mmembed_emulator.url + "/v2/embeddings", json={})
    wrong_method = http.get(mmembed_emulator.url + JINA, headers=JINA_AUTH)
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    assert missing.headers["x-request-id"]
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"
    assert [r.provider for r in mmembed_emulator.requests] == [None, "jina"]


def test_keep_alive_reuses_one_connection_and_stats(mmembed_emulator: Emulator, http: requests.Session) -> None:
    for _ in range(5):
        assert http.post(mmembed_emulator.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH).ok
    http.post(mmembed_emulator.url + JINA, json={"input": ["x"]})
    stats = mmembed_emulator.stats
    assert (stats.requests, stats.connections, stats.max_in_flight) == (6, 1, 1)
    assert stats.responses_by_status == {200: 5, 401: 1}
    mmembed_emulator.clear()
    assert mmembed_emulator.requests == [] and mmembed_emulator.stats.requests == 0


# --- The shared space ------------------------------------------------------------------------------------

PROVIDER_CALLS = ["nomic", "jina", "vertex"]


def embed_texts(emu: Emulator, http: requests.Session, provider: str, texts: list[str]) -> list[list[float]]:
    out: list[list[float]] = []
    if provider == "nomic":
        for i in range(0, len(texts), 10):
            body = {"texts": texts[i:i + 10], "model": "nomic-embed-text-v1.5", "task_type": "search_query"}
            out += http.post(emu.url + NOMIC_TEXT, json=body, headers=NOMIC_AUTH).json()["embeddings"]
    elif provider == "jina":
        body = {"input": texts, "task": "retrieval.query"}
        data = http.post(emu.url + JINA, json=body, headers=JINA_AUTH).json()["data"]
        out = [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
    else:
        for text in texts:
            r = http.post(emu.url + vertex_path(), json={"instances": [{"text": text}]}, headers=VERTEX_AUTH)
            out.append(r.json()["predictions"][0]["textEmbedding"])
    return out


def embed_images(emu: Emulator, http: requests.Session, provider: str, images: list[bytes]) -> list[list[float]]:
    if provider == "nomic":
        parts = [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
        r = http.post(emu.url + NOMIC_IMAGE, data={"model": "nomic-embed-vision-v1.5"}, files=parts,
                      headers=NOMIC_AUTH)
        embeddings: list[list[float]] = r.json()["embeddings"]
        return embeddings
    if provider == "jina":
        data = http.post(emu.url + JINA, json={"input": [{"image": b64(d)} for d in images]},
                         headers=JINA_AUTH).json()["data"]
        return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
    out = []
    for data in images:
        body = {"instances": [{"image": {"bytesBase64Encoded": b64(data)}}]}
        out.append(http.post(emu.url + vertex_path(), json=body, headers=VERTEX_AUTH)
                   .json()["predictions"][0]["imageEmbedding"])
    return out


@pytest.mark.parametrize("provider", PROVIDER_CALLS)
def test_colour_texts_find_their_photos_with_a_modality_gap(
    mmembed_emulator: Emulator, http: requests.Session, photos: dict[str, bytes], provider: str
) -> None:
    names = list(COLOURS)
    texts = embed_texts(mmembed_emulator, http, provider, [f"a photo of something {n}" for n in names])
    images = embed_images(mmembed_emulator, http, provider, [photos[n] for n in names])
    sims = np.array([[cos(t, i) for i in images] for t in texts])

    assert [names[j] for j in sims.argmax(axis=1)] == names  # every colour text ranks its own photo first
    matching, others = np.diag(sims), sims[~np.eye(len(names), dtype=bool)]
    # CLIP's magnitudes (Liang et al. 2022): matching image-text cosines ≈0.3, unrelated ones ≈0.1-0.15, not 0
    assert 0.25 < matching.min() and matching.max() < 0.32
    assert 0.08 < others.min() and others.max() < 0.15 < matching.min() - 0.1
    text_text = [cos(texts[0], t) for t in texts[1:]] + [
        cos(*embed_texts(mmembed_emulator, http, provider, ["a dog in the park", "red"]))
    ]
    assert min(text_text) > 0.7 > sims.max()  # any text outranks every image in one collection


def test_same_picture_lands_near_itself_other_pictures_a_little_apart() -> None:
    photo = colour_photo("orange", (640, 480))
    model = ("jina", "jina-clip-v2")
    original = emulator_vector(*model, image=encode(photo, "PNG"))
    assert cos(original, emulator_vector(*model, image=encode(photo, "JPEG"))) > 0.9999
    assert cos(original, emulator_vector(*model, image=photo.resize((320, 240)))) > 0.9999
    another_orange = emulator_vector(*model, image=colour_photo("orange", (640, 480), seed=7))
    assert 0.9 < cos(original, another_orange) < 0.999
    assert cos(original, emulator_vector(*model, image=colour_photo("blue", (640, 480)))) < 0.85


def test_transparent_and_palette_images_are_flattened_onto_white() -> None:
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    model = ("nomic", "nomic-embed-vision-v1.5")
    assert np.allclose(emulator_vector(*model, image=clear), emulator_vector(*model, image=white))
    palette = Image.new("RGB", (64, 64), COLOURS["green"]).convert("P")
    assert cos(emulator_vector(*model, image=palette), emulator_vector(*model, image=palette.convert("RGB"))) > 0.999


def test_vectors_are_identical_in_another_process() -> None:
    code = (
        "from mmembed.testing import emulator_vector, colour_photo;"
        "print(emulator_vector('vertex', 'multimodalembedding@001', text='grey cat', dimensions=128).tolist());"
        "print(emulator_vector('nomic', 'nomic-embed-vision-v1', image=colour_photo('gray', (64, 48))).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    text, image = (json.loads(line) for line in out.splitlines())
    assert text == emulator_vector("vertex", VERTEX_MODEL, text="grey cat", dimensions=128).tolist()
    assert image == emulator_vector("nomic", "nomic-embed-vision-v1", image=colour_photo("gray", (64, 48))).tolist()


def test_emulator_vector_refuses_what_the_api_refuses() -> None:
    with pytest.raises(ValueError, match="does not know"):
        emulator_vector("jina", "jina-clip-v9", text="x")
    with pytest.raises(ValueError, match="exactly one"):
        emulator_vector("jina", "jina-clip-v2")
    with pytest.raises(ValueError, match="embed image"):
        emulator_vector("nomic", "nomic-embed-text-v1.5", image=colour_photo("red", (8, 8)))
    with pytest.raises(ValueError, match="dimensions"):
        emulator_vector("nomic", "nomic-embed-vision-v1.5", image=colour_photo("red", (8, 8)), dimensions=64)


def test_colour_photo_is_photo_like() -> None:
    photo = colour_photo("purple")
    assert photo.size == (1600, 1200) and photo.mode == "RGB"
    assert 200_000 < len(encode(photo)) < 600_000
    mean = np.asarray(photo, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - COLOURS["purple"]).max() < 15
    assert encode(colour_photo("purple", (64, 48), seed=1)) != encode(colour_photo("purple", (64, 48), seed=2))
    with pytest.raises(ValueError, match="unknown colour"):
        colour_photo("mauve")


# --- Knobs -----------------------------------------------------------------------------------------------


def test_latency_applies_to_every_request(mmembed_emulator_factory: Factory, http: requests.Session) -> None:
    emu = mmembed_emulator_factory(latency=0.3)
    for path, body, headers in [
        (JINA, {"input": ["x"]}, JINA_AUTH),
        (NOMIC_TEXT, {"texts": ["x"], "model": "nomic-embed-text-v1.5"}, NOMIC_AUTH),
    ]:
        start = time.monotonic()
        assert http.post(emu.url + path, json=body, headers=headers).status_code == 200
        assert time.monotonic() - start >= 0.3


def test_rate_limit_answers_429_with_retry_after(mmembed_emulator_factory: Factory, http: requests.Session) -> None:
    emu = mmembed_emulator_factory(rate_limit=2)
    answers = [http.post(emu.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH) for _ in range(4)]
    assert [r.status_code for r in answers[:2]] == [200, 200]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["code"] == "RATE_LIMIT_EXCEEDED"
    vertex = http.post(emu.url + vertex_path(), json={"instances": [{"text": "x"}]}, headers=VERTEX_AUTH)
    assert vertex.status_code == 429 and vertex.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert emu.stats.rate_limited == len(limited) + 1

    quiet = mmembed_emulator_factory(rate_limit=1, retry_after=False)
    second = [http.post(quiet.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH) for _ in range(2)][1]
    assert second.status_code == 429 and "Retry-After" not in second.headers


def test_max_concurrency(mmembed_emulator_factory: Factory) -> None:
    emu = mmembed_emulator_factory(max_concurrency=2, latency=0.5)
    barrier, statuses = threading.Barrier(5), []

    def call() -> None:
        with requests.Session() as session:
            session.trust_env = False
            barrier.wait()
            statuses.append(session.post(emu.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH).status_code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 429, 429, 429]
    assert emu.stats.max_in_flight == 2 and emu.stats.connections == 5


# --- Faults ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [
        ("500", 500, None),
        ("429", 429, "1"),
        (Fault("status", 503, retry_after=7), 503, "7"),
        (Fault("status", 429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT"), 429, "Wed, 21 Oct 2026 07:28:00 GMT"),
        ("408", 408, None),
    ],
)
def test_status_faults_use_each_providers_error_format(
    mmembed_emulator: Emulator, http: requests.Session, fault: Fault | str, status: int, retry_after: str | None
) -> None:
    emu = mmembed_emulator
    emu.inject(fault, times=3)
    nomic = http.post(emu.url + NOMIC_TEXT, json={"texts": ["x"], "model": "nomic-embed-text-v1.5"},
                      headers=NOMIC_AUTH)
    jina = http.post(emu.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH)
    vertex = http.post(emu.url + vertex_path(), json={"instances": [{"text": "x"}]}, headers=VERTEX_AUTH)
    for r in (nomic, jina, vertex):
        assert r.status_code == status
        assert r.headers.get("Retry-After") == retry_after
    assert isinstance(nomic.json()["detail"], str)
    assert set(jina.json()) == {"detail", "code", "request_id"}
    assert vertex.json()["error"]["code"] == status
    assert http.post(emu.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH).status_code == 200


def test_reset_fault(mmembed_emulator: Emulator, http: requests.Session) -> None:
    mmembed_emulator.inject("reset")
    with pytest.raises(requests.ConnectionError):
        http.post(mmembed_emulator.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH)
    assert http.post(mmembed_emulator.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH).ok
    assert mmembed_emulator.stats.resets == 1
    assert mmembed_emulator.requests[0].status is None


def test_hang_fault_times_the_client_out_and_stop_releases_it(
    mmembed_emulator: Emulator, http: requests.Session
) -> None:
    mmembed_emulator.inject(Fault("hang", delay=1.0))
    with pytest.raises(requests.Timeout):
        http.post(mmembed_emulator.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH, timeout=0.2)

    mmembed_emulator.inject("hang")  # 30 s by default
    outcome: list[BaseException | int] = []

    def wait_for_it() -> None:
        with requests.Session() as session:
            session.trust_env = False
            try:
                outcome.append(session.post(mmembed_emulator.url + JINA, json={"input": ["x"]},
                                            headers=JINA_AUTH, timeout=10).status_code)
            except requests.RequestException as exc:
                outcome.append(exc)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.2)
    start = time.monotonic()
    mmembed_emulator.stop()
    waiter.join(5)
    assert time.monotonic() - start < 3
    assert isinstance(outcome[0], requests.ConnectionError)


def test_trickle_fault_sends_the_whole_answer_slowly(mmembed_emulator: Emulator, http: requests.Session) -> None:
    body = {"input": ["a red car"]}  # 1024 floats: an answer that is gzipped when not trickled
    clean = http.post(mmembed_emulator.url + JINA, json=body, headers=JINA_AUTH)
    mmembed_emulator.inject(Fault("trickle", delay=0.001))
    started = time.monotonic()
    slow = http.post(mmembed_emulator.url + JINA, json=body, headers=JINA_AUTH, timeout=5)
    pieces = len(slow.content) // 16
    assert time.monotonic() - started >= pieces * 0.001
    assert clean.headers["Content-Encoding"] == "gzip"
    assert slow.status_code == 200 and "Content-Encoding" not in slow.headers  # sent as it is, piece by piece
    assert slow.json()["data"] == clean.json()["data"]


def test_malformed_html_and_wrong_count_faults(mmembed_emulator: Emulator, http: requests.Session) -> None:
    emu = mmembed_emulator
    emu.inject("malformed")
    broken = http.post(emu.url + JINA, json={"input": ["x", "y"]}, headers=JINA_AUTH)
    assert broken.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        broken.json()

    emu.inject("html", provider="nomic")
    page = http.post(emu.url + NOMIC_TEXT, json={"texts": ["x"], "model": "nomic-embed-text-v1.5"},
                     headers=NOMIC_AUTH)
    assert page.status_code == 502 and page.headers["Content-Type"] == "text/html"
    assert "<html>" in page.text

    emu.inject("wrong_count", times=3)
    nomic = http.post(emu.url + NOMIC_TEXT, json={"texts": ["x", "y", "z"], "model": "nomic-embed-text-v1.5"},
                      headers=NOMIC_AUTH)
    jina = http.post(emu.url + JINA, json={"input": ["x", "y", "z"]}, headers=JINA_AUTH)
    vertex = http.post(emu.url + vertex_path(), json={"instances": [{"text": "x"}]}, headers=VERTEX_AUTH)
    assert len(nomic.json()["embeddings"]) == 2
    assert sorted(d["index"] for d in jina.json()["data"]) == [0, 1]
    assert vertex.json()["predictions"] == []


def test_injected_faults_wait_for_their_provider(mmembed_emulator: Emulator, http: requests.Session) -> None:
    emu = mmembed_emulator
    emu.inject("503", times=2, provider="jina")
    nomic = http.post(emu.url + NOMIC_TEXT, json={"texts": ["x"], "model": "nomic-embed-text-v1.5"},
                      headers=NOMIC_AUTH)
    jina = [http.post(emu.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH).status_code for _ in range(3)]
    assert (nomic.status_code, jina) == (200, [503, 503, 200])


def test_random_faults_are_seeded(mmembed_emulator_factory: Factory, http: requests.Session) -> None:
    def run(seed: int) -> list[int]:
        emu = mmembed_emulator_factory(fault_rate=0.5, fault_kinds=["500", "503"], seed=seed)
        return [http.post(emu.url + JINA, json={"input": ["x"]}, headers=JINA_AUTH).status_code for _ in range(12)]

    first = run(3)
    assert first == run(3)
    assert set(first) == {200, 500, 503}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="fault_kinds"):
        Emulator(fault_rate=0.1)
    with pytest.raises(ValueError, match="provider"):
        Emulator().inject("500", provider="openai")
    with pytest.raises(RuntimeError, match="not running"):
        _ = Emulator().url


# --- Packaging: fixtures, CLI, public surface --------------------------------------------------------------


def test_pytest_fixtures_from_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import requests

        seen = []

        def test_fixtures(mmembed_emulator, mmembed_emulator_factory):
            slow = mmembed_emulator_factory(latency=0.01)
            assert slow.url != mmembed_emulator.url
            r = requests.post(mmembed_emulator.url + "/v1/embeddings", json={"input": ["x"]},
                              headers={"Authorization": "Bearer k"})
            assert r.status_code == 200
            seen.extend([mmembed_emulator, slow])

        def test_they_were_stopped():
            assert [repr(e).endswith("stopped (offline emulator: fake vectors)>") for e in seen] == [True, True]
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_module_cli_help_and_serve_forever() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "mmembed.testing", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--rate-limit" in help_text and "EMULATOR" in help_text
    with pytest.raises(SystemExit):
        main(["--port", "not-a-number"])

    out, stop = io.StringIO(), threading.Event()
    server = threading.Thread(target=serve_forever, kwargs={"port": 0, "stop": stop, "out": out})
    server.start()
    for _ in range(100):
        if "http://127.0.0.1:" in out.getvalue():
            break
        time.sleep(0.02)
    stop.set()
    server.join(5)
    assert "fake vectors, NOT the real models" in out.getvalue()


def test_public_surface() -> None:
    public = {
        name for name, value in vars(testing).items()
        if name.isidentifier() and not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(testing.__all__) == public
    assert "NOT the real models" in (Emulator.__doc__ or "")
    assert "EMULATOR" in (testing.__doc__ or "")
