"""Tests for mmembed.chroma against the offline emulator, with real Chroma stores.

Every image is generated here; provider keys are cleared by conftest. The tests against a real ``chroma run``
server on loopback (conftest's ``chroma_server``) are the ``TestChromaServer`` class: ``pytest -k ChromaServer``.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from chromadb.utils.embedding_functions import known_embedding_functions
from PIL import Image

from conftest import IMAGE_PROVIDERS, PROVIDERS, ChromaServer, gives, host_port, png_bytes
from conftest import http_client as shared_http_client
from mmembed import ConfigurationError, ImageSource, InputError
from mmembed.chroma import (
    RRF_K,
    ImageURILoader,
    JinaMultimodalEmbeddingFunction,
    MultimodalEmbeddingFunction,
    NomicMultimodalEmbeddingFunction,
    VertexMultimodalEmbeddingFunction,
    add_mixed,
    embedding_function_of,
    function_class,
    query_mixed,
)
from mmembed.providers import PROVIDERS as PROVIDER_CLASSES
from mmembed.testing import Emulator, RecordedRequest, colour_photo

CANARY = "canary-key-7f3a9"
EF_CLASSES: dict[str, type[MultimodalEmbeddingFunction]] = {
    "nomic": NomicMultimodalEmbeddingFunction,
    "jina": JinaMultimodalEmbeddingFunction,
    "vertex": VertexMultimodalEmbeddingFunction,
    **{name: function_class(name) for name in PROVIDERS},  # the rest, from the registry
}
KEY_VARS = {name: PROVIDER_CLASSES[name].env_var for name in PROVIDERS}
# Which image each colour is, in the collections of the store fixtures: one image per input form.
EXPECTED_TOP = {"blue": "array-blue", "red": "jpeg-red", "green": "png-green", "yellow": "url-yellow"}
SETTINGS = Settings(anonymized_telemetry=False)
ROOT = Path(__file__).resolve().parents[1]


# -- fixtures and helpers ---------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS.values() and not k.startswith("GOOGLE_CLOUD")}
    return {**env, **extra}


def make_ef(provider: str, emu: Emulator, **options: Any) -> MultimodalEmbeddingFunction:
    for key, value in PROVIDER_CLASSES[provider].test_options.items():
        options.setdefault(key, value)
    options.setdefault("api_key", CANARY)
    options.setdefault("requests_per_minute", 60_000)  # the emulator has no quota; Vertex's default is 120/min
    return EF_CLASSES[provider](base_url=emu.url_for(provider), allow_private_urls=True, **options)


@dataclass(frozen=True)
class Photos:
    root: Path
    red_jpeg: Path  # 1600x1200: big enough that an upload at full size would show
    green_png: Path
    yellow_jpeg: Path  # served over http
    blue_array: np.ndarray
    url: str  # of yellow_jpeg


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Photos]:
    root = tmp_path_factory.mktemp("photos")
    colour_photo("red").save(root / "red.jpg", quality=90)
    colour_photo("green", (800, 600)).save(root / "green.png")
    colour_photo("yellow", (800, 600)).save(root / "yellow.jpg", quality=90)
    handler = lambda *a: _QuietHandler(*a, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Photos(
            root=root,
            red_jpeg=root / "red.jpg",
            green_png=root / "green.png",
            yellow_jpeg=root / "yellow.jpg",
            blue_array=np.asarray(colour_photo("blue", (320, 240))),
            url=f"http://127.0.0.1:{server.server_address[1]}/yellow.jpg",
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the stores: it accepts only the canary key, so a reopened collection must use the env."""
    with Emulator(api_keys=[CANARY]) as emu:
        yield emu


def fill_photo_collection(client: Any, provider: str, emu: Emulator, photos: Photos) -> None:
    """A collection with two texts and one image per input form, each added the way Chroma users add it."""
    ef = make_ef(provider, emu)
    col = client.create_collection(f"photos-{provider}", embedding_function=ef, data_loader=ImageURILoader())
    text, image = {"modality": "text"}, {"modality": "image"}
    col.add(ids=["text-red", "text-blue"], documents=["a red apple", "the blue sea"], metadatas=[text, text])
    col.add(ids=["array-blue"], images=[photos.blue_array], metadatas=[image])
    col.add(ids=["jpeg-red", "png-green"], uris=[str(photos.red_jpeg), str(photos.green_png)], metadatas=[image] * 2)
    col.add(ids=["url-yellow"], uris=[photos.url], metadatas=[image])
    ef.close()


def top_image_per_colour(col: Any) -> dict[str, str]:
    result = col.query(query_texts=list(EXPECTED_TOP), n_results=1, where={"modality": "image"})
    return {colour: ids[0] for colour, ids in zip(EXPECTED_TOP, result["ids"], strict=True)}


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# Run in a fresh interpreter with the key only in the environment and no embedding function passed.
REOPEN_SCRIPT = """
import json, sys
import chromadb
from chromadb.config import Settings
import mmembed.chroma
from mmembed.chroma import ImageURILoader

spec = json.loads(sys.argv[1])
settings = Settings(anonymized_telemetry=False)
if spec.get("path"):
    client = chromadb.PersistentClient(path=spec["path"], settings=settings)
else:
    client = chromadb.HttpClient(host=spec["host"], port=spec["port"], settings=settings)
out = {}
for name in spec["collections"]:
    col = client.get_collection(name, data_loader=ImageURILoader())
    result = col.query(query_texts=spec["colours"], n_results=1, where={"modality": "image"})
    out[name] = {
        "function": type(col.configuration["embedding_function"]).__name__,
        "top": {colour: ids[0] for colour, ids in zip(spec["colours"], result["ids"])},
    }
client.close()
if hasattr(client._server, "_session"):  # HttpClient: chromadb 1.5.9's close() leaves its sessions open
    for server in (client._server, client._admin_client._server):
        server._session.close()
print(json.dumps(out))
"""


def reopen_in_new_process(spec: dict[str, Any], emulator: Emulator) -> dict[str, Any]:
    """Query the stored collections from a new process, which trusts the emulator's host (it is no provider's)."""
    spec = {**spec, "collections": [f"photos-{p}" for p in IMAGE_PROVIDERS], "colours": list(EXPECTED_TOP)}
    env = child_env(**{var: CANARY for var in KEY_VARS.values()}, MMEMBED_TRUSTED_HOSTS=host_port(emulator.url))
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", REOPEN_SCRIPT, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def check_reopened(result: dict[str, Any]) -> None:
    for provider in IMAGE_PROVIDERS:
        reopened = result[f"photos-{provider}"]
        assert reopened["function"] == EF_CLASSES[provider].__name__
        assert reopened["top"] == EXPECTED_TOP


# -- the embedded store: every image form, reopening, no key on disk ---------------------------------


@pytest.fixture(scope="module")
def persistent_store(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator, photos: Photos) -> Path:
    path = tmp_path_factory.mktemp("store")
    with chromadb.PersistentClient(path=str(path), settings=SETTINGS) as client:
        for provider in IMAGE_PROVIDERS:
            fill_photo_collection(client, provider, emulator, photos)
    return path


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_every_image_form_is_found_first_by_its_colour(
    provider: str, persistent_store: Path, emulator: Emulator, photos: Photos
) -> None:
    with chromadb.PersistentClient(path=str(persistent_store), settings=SETTINGS) as client:
        ef = make_ef(provider, emulator)
        col = client.get_collection(f"photos-{provider}", embedding_function=ef, data_loader=ImageURILoader())
        assert col.configuration_json["hnsw"]["space"] == "cosine"
        assert top_image_per_colour(col) == EXPECTED_TOP
        by_image = col.query(query_uris=[str(photos.green_png)], n_results=1, where={"modality": "image"})
        assert by_image["ids"] == [["png-green"]]
        stored = col.get(ids=["jpeg-red", "url-yellow", "array-blue"], include=["uris"])
        assert dict(zip(stored["ids"], stored["uris"] or [], strict=True)) == {
            "jpeg-red": str(photos.red_jpeg),
            "url-yellow": photos.url,
            "array-blue": None,
        }
        ef.close()


def test_reopened_in_a_new_process_without_function_and_no_key_on_disk(
    persistent_store: Path, emulator: Emulator
) -> None:
    check_reopened(reopen_in_new_process({"path": str(persistent_store)}, emulator))
    assert files_containing(persistent_store, b"mmembed_nomic"), "the scan must see where configs live"
    assert files_containing(persistent_store, CANARY.encode()) == []


# -- what went over the wire -------------------------------------------------------------------------


def image_requests(emu: Emulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if _carries_image(r)]


def _carries_image(r: RecordedRequest) -> bool:
    if r.provider == "nomic":
        return r.path == "/v1/embedding/image"
    if r.provider == "jina":
        return any("image" in item for item in r.json["input"])
    return "image" in r.json["instances"][0]


def uploaded_image(r: RecordedRequest) -> bytes:
    if r.provider == "nomic":
        (part,) = [f for f in r.files if f[0] == "images"]
        return part[3]
    if r.provider == "jina":
        (item,) = r.json["input"]
        return base64.b64decode(item["image"])
    return base64.b64decode(r.json["instances"][0]["image"]["bytesBase64Encoded"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    with chromadb.PersistentClient(path=str(tmp_path / "store"), settings=SETTINGS) as client:
        yield client


@pytest.mark.parametrize(("provider", "short_side"), [("nomic", 336), ("jina", 512), ("vertex", 512)])
def test_a_local_1600x1200_jpeg_goes_out_downscaled(
    provider: str, short_side: int, store: Any, mmembed_emulator: Emulator, photos: Photos
) -> None:
    ef = make_ef(provider, mmembed_emulator)
    col = store.create_collection("wire", embedding_function=ef, data_loader=ImageURILoader())
    col.add(ids=["red"], uris=[str(photos.red_jpeg)])
    (request,) = image_requests(mmembed_emulator)
    data = uploaded_image(request)
    with Image.open(io.BytesIO(data)) as sent:
        assert min(sent.size) == short_side and sent.size[0] / sent.size[1] == pytest.approx(4 / 3, rel=0.01)
    assert photos.red_jpeg.stat().st_size > 400_000
    assert len(data) < 80_000  # the original is ~450 KB
    ef.close()


@pytest.mark.parametrize("provider", ["nomic", "jina"])
def test_an_http_url_goes_to_nomic_and_jina_as_a_url(
    provider: str, store: Any, mmembed_emulator: Emulator, photos: Photos
) -> None:
    ef = make_ef(provider, mmembed_emulator)
    col = store.create_collection("wire", embedding_function=ef, data_loader=ImageURILoader())
    col.add(ids=["yellow"], uris=[photos.url])
    (request,) = mmembed_emulator.requests
    if provider == "nomic":
        assert request.path == "/v1/embedding/image"
        assert request.form["urls"] == [photos.url] and request.files == []
    else:
        assert request.json["input"] == [{"image": photos.url}]
    ef.close()


def test_an_http_url_is_downloaded_and_shrunk_for_vertex(
    store: Any, mmembed_emulator: Emulator, photos: Photos
) -> None:
    ef = make_ef("vertex", mmembed_emulator)
    col = store.create_collection("wire", embedding_function=ef, data_loader=ImageURILoader())
    col.add(ids=["yellow"], uris=[photos.url])
    (request,) = mmembed_emulator.requests
    with Image.open(io.BytesIO(uploaded_image(request))) as sent:
        assert sent.size == (683, 512)  # from 800x600
    ef.close()


def test_gs_uris_go_to_vertex_as_gcs_and_are_refused_by_nomic(store: Any, mmembed_emulator: Emulator) -> None:
    ef = make_ef("vertex", mmembed_emulator)
    col = store.create_collection("gcs", embedding_function=ef, data_loader=ImageURILoader())
    col.add(ids=["g"], uris=["gs://bucket/cat.jpg"])
    (request,) = mmembed_emulator.requests
    assert request.json["instances"] == [{"image": {"gcsUri": "gs://bucket/cat.jpg"}}]
    nomic = make_ef("nomic", mmembed_emulator)
    other = store.create_collection("gcs-nomic", embedding_function=nomic, data_loader=ImageURILoader())
    with pytest.raises(InputError, match="gs://"):
        other.add(ids=["g"], uris=["gs://bucket/cat.jpg"])
    ef.close()
    nomic.close()


def test_documents_and_queries_use_the_provider_tasks(mmembed_emulator: Emulator) -> None:
    ef = make_ef("nomic", mmembed_emulator)
    assert len(ef(["a red apple"])) == 1
    (vector,) = ef.embed_query(["red"])
    assert vector.dtype == np.float32 and float(vector @ vector) == pytest.approx(1.0, abs=1e-5)
    assert [r.json["task_type"] for r in mmembed_emulator.requests] == ["search_document", "search_query"]
    ef.close()


# -- the data loader ---------------------------------------------------------------------------------


def test_loader_hands_out_references_and_reads_nothing(tmp_path: Path) -> None:
    missing = str(tmp_path / "not-there.jpg")
    loaded = ImageURILoader()([missing, "https://example.com/a.jpg", None, "gs://b/c.png"])
    assert loaded == [ImageSource(missing), ImageSource("https://example.com/a.jpg"), None, ImageSource("gs://b/c.png")]
    with pytest.raises(InputError, match="s3://"):
        ImageURILoader()(["s3://bucket/key.jpg"])


def test_include_data_returns_references(persistent_store: Path, emulator: Emulator, photos: Photos) -> None:
    with chromadb.PersistentClient(path=str(persistent_store), settings=SETTINGS) as client:
        ef = make_ef("jina", emulator)
        col = client.get_collection("photos-jina", embedding_function=ef, data_loader=ImageURILoader())
        got = col.get(ids=["url-yellow", "array-blue"], include=["data"])
        assert dict(zip(got["ids"], got["data"] or [], strict=True)) == {
            "url-yellow": ImageSource(photos.url),
            "array-blue": None,
        }
        ef.close()


def test_embedding_function_of_prefers_the_function_passed_to_chroma(
    persistent_store: Path, emulator: Emulator
) -> None:
    with chromadb.PersistentClient(path=str(persistent_store), settings=SETTINGS) as client:
        ef = make_ef("nomic", emulator)
        assert embedding_function_of(client.get_collection("photos-nomic", embedding_function=ef)) is ef
        stored = embedding_function_of(client.get_collection("photos-nomic"))
        assert type(stored) is NomicMultimodalEmbeddingFunction and stored.get_config() == ef.get_config()
        ef.close()


# -- mixed collections -------------------------------------------------------------------------------


@pytest.fixture
def mixed(store: Any, mmembed_emulator: Emulator, photos: Photos) -> Callable[[str], Any]:
    """A collection per provider with four colour texts and three colour images, added by add_mixed."""

    def build(provider: str) -> Any:
        ef = make_ef(provider, mmembed_emulator)
        col = store.create_collection(f"mixed-{provider}", embedding_function=ef)
        add_mixed(
            col,
            ["text-red", "text-green", "text-blue", "text-yellow", "image-red", "image-blue", "image-green"],
            ["red", "green", "blue", "yellow", photos.red_jpeg, photos.blue_array, ImageSource(str(photos.green_png))],
            metadatas=[{"batch": 1}, None, None, None, {"batch": 1}, None, {"modality": "image"}],
        )
        return col

    return build


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_query_mixed_finds_the_red_text_and_the_red_image(provider: str, mixed: Callable[[str], Any]) -> None:
    col = mixed(provider)
    plain = col.query(query_texts=["red"], n_results=4)
    if provider in ("nomic", "jina", "vertex"):  # CLIP-style models; natively multimodal ones have a smaller gap
        assert all(id_.startswith("text-") for id_ in plain["ids"][0]), "the modality gap: texts outrank all images"
    rrf = query_mixed(col, query_texts=["red"], n_results=2, fusion="rrf")
    assert set(rrf["ids"][0]) == {"text-red", "image-red"}
    assert rrf["rrf_scores"] == rrf["scores"] == [[1 / (RRF_K + 1), 1 / (RRF_K + 1)]]
    result = query_mixed(col, query_texts=["red"], n_results=7)  # calibrated: every record, by relevance
    assert set(result["ids"][0][:2]) == {"text-red", "image-red"}
    scores = result["scores"][0]
    assert min(scores[:2]) > 2 > max(scores[2:]), scores  # the two red records stand out, nothing else does
    assert "rrf_scores" not in result


def test_add_mixed_stores_documents_uris_and_modality(
    mixed: Callable[[str], Any], mmembed_emulator: Emulator, photos: Photos
) -> None:
    col = mixed("nomic")
    assert [r.path for r in mmembed_emulator.requests] == ["/v1/embedding/text", "/v1/embedding/image"]
    assert len(mmembed_emulator.requests[1].files) == 3  # one pass: all three images in one request
    got = col.get(include=["documents", "uris", "metadatas"])
    rows = {
        id_: (doc, uri, meta)
        for id_, doc, uri, meta in zip(*(got[k] for k in ("ids", "documents", "uris", "metadatas")), strict=True)
    }
    assert rows["text-red"] == ("red", None, {"modality": "text", "batch": 1})
    assert rows["text-blue"] == ("blue", None, {"modality": "text"})
    assert rows["image-red"] == (None, str(photos.red_jpeg), {"modality": "image", "batch": 1})
    assert rows["image-blue"] == (None, None, {"modality": "image"})
    assert rows["image-green"] == (None, str(photos.green_png), {"modality": "image"})


def test_query_mixed_result_shape_and_where(mixed: Callable[[str], Any], photos: Photos) -> None:
    col = mixed("jina")
    result = query_mixed(col, query_texts=["blue", "green"], query_images=[photos.blue_array], n_results=3)
    assert len(result["ids"]) == 3  # the texts, then the image
    assert set(result["ids"][0][:2]) == {"text-blue", "image-blue"}
    assert set(result["ids"][1][:2]) == {"text-green", "image-green"}
    assert result["ids"][2][0] == "image-blue"
    for q, ids in enumerate(result["ids"]):
        assert len(ids) == 3
        assert result["scores"][q] == sorted(result["scores"][q], reverse=True)
        for i, id_ in enumerate(ids):
            modality = result["metadatas"][q][i]["modality"]
            assert id_.startswith(modality) and (result["documents"][q][i] is None) == (modality == "image")
    # distances are Chroma's own cosine distances for each hit
    image_only = col.query(query_texts=["blue"], n_results=1, where={"modality": "image"}, include=["distances"])
    first_image = result["ids"][0].index("image-blue")
    assert result["distances"][0][first_image] == pytest.approx(image_only["distances"][0][0])
    assert result["included"] == ["metadatas", "documents", "distances", "uris"]

    filtered = query_mixed(col, query_texts=["red"], n_results=5, where={"batch": 1})
    assert set(filtered["ids"][0]) == {"text-red", "image-red"}


@pytest.mark.parametrize("provider", ["jina", "gemini"])  # a CLIP-style gap and a small one
def test_calibrated_fusion_ranks_by_relevance_on_a_larger_collection(
    provider: str, store: Any, mmembed_emulator: Emulator
) -> None:
    """12 notes and 12 photos (each past the minimum for a background of its own): relevance, not quota.

    Few records match any one query, as in real collections: the calibration takes most of a modality to be
    unrelated (a modality where half the records matched one query would look to it like its background).
    """
    ef = make_ef(provider, mmembed_emulator)
    col = store.create_collection(f"larger-{provider}", embedding_function=ef)
    colours = ["red", "orange", "yellow", "green", "blue", "purple"]
    notes = [f"note {i}: a {c} {'boat' if i in (4, 10) else 'kite'}" for i, c in enumerate(colours * 2)]
    photos = [png_bytes(colour_photo(c, (96, 64), seed=i)) for i, c in enumerate(colours * 2)]
    ids = [f"note-{i}" for i in range(12)] + [f"photo-{i}" for i in range(12)]
    add_mixed(col, ids, [*notes, *photos])
    red = {"note-0", "note-6", "photo-0", "photo-6"}

    result = query_mixed(col, query_texts=["red"], n_results=8)
    assert set(result["ids"][0][:4]) == red, result["ids"][0]
    assert min(result["scores"][0][:4]) > max(2, *result["scores"][0][4:])
    rrf = query_mixed(col, query_texts=["red"], n_results=8, fusion="rrf")
    assert set(rrf["ids"][0][:4]) == red  # two of each modality: here RRF's quota happens to be right

    # "boat" names no colour: only two notes are relevant, and no photo comes above them (RRF gives one rank 2)
    boats = query_mixed(col, query_texts=["boat"], n_results=8)
    assert set(boats["ids"][0][:2]) == {"note-4", "note-10"}
    assert min(boats["scores"][0][:2]) > 2 > max(boats["scores"][0][2:])
    rrf = query_mixed(col, query_texts=["boat"], n_results=8, fusion="rrf")
    assert rrf["ids"][0][1].startswith("photo-")

    # records added later are calibrated too: the sample is kept only while the collection's size is unchanged
    add_mixed(col, ["photo-new"], [png_bytes(colour_photo("red", (96, 64), seed=99))])
    again = query_mixed(col, query_texts=["red"], n_results=5)
    assert set(again["ids"][0]) == {*red, "photo-new"}
    ef.close()


def test_query_mixed_refuses_an_unknown_fusion(mixed: Callable[[str], Any]) -> None:
    with pytest.raises(ValueError, match="fusion must be 'calibrated' or 'rrf'"):
        query_mixed(mixed("jina"), query_texts=["red"], fusion="z-score")  # type: ignore[arg-type]


def test_add_mixed_refuses_bad_input(store: Any, mmembed_emulator: Emulator) -> None:
    col = store.create_collection("mixed", embedding_function=make_ef("jina", mmembed_emulator))
    with pytest.raises(ValueError, match="differ in length"):
        add_mixed(col, ["a"], ["red", "blue"])
    with pytest.raises(ValueError, match="modality"):
        add_mixed(col, ["a"], ["red"], metadatas=[{"modality": "image"}])
    with pytest.raises(ValueError, match="query_texts or query_images"):
        query_mixed(col)
    plain = store.create_collection("plain", embedding_function=None)
    with pytest.raises(ConfigurationError, match="mmembed embedding function"):
        add_mixed(plain, ["a"], ["red"])


# -- Chroma's contract: names, config, validation, updates -------------------------------------------


def test_names_are_registered_and_collide_with_no_builtin() -> None:
    assert {cls.name() for cls in EF_CLASSES.values()} == {f"mmembed_{name}" for name in PROVIDERS}
    for cls in EF_CLASSES.values():
        assert known_embedding_functions[cls.name()] is cls
    builtin = {name for name, cls in known_embedding_functions.items() if cls.__module__.startswith("chromadb.")}
    assert {"nomic", "jina", "google_vertex", "voyageai", "cohere"} <= builtin
    assert builtin.isdisjoint(cls.name() for cls in EF_CLASSES.values())


def test_config_holds_models_and_env_var_name_never_the_key(mmembed_emulator: Emulator) -> None:
    nomic = make_ef("nomic", mmembed_emulator, dimensions=256)
    assert nomic.get_config() == {
        "text_model": "nomic-embed-text-v1.5",
        "vision_model": "nomic-embed-vision-v1.5",
        "dimensions": 256,
        "image_side": None,
        "base_url": mmembed_emulator.url,
        "api_key_env_var": "NOMIC_API_KEY",
    }
    vertex = make_ef("vertex", mmembed_emulator, location="europe-west4", api_key_env_var="MY_VERTEX_KEY")
    assert vertex.get_config() == {
        "model": "multimodalembedding@001",
        "project_id": "test-project",
        "location": "europe-west4",
        "query_template": None,  # prompt templates are for Gemini models only
        "document_template": None,
        "dimensions": 1408,
        "image_side": None,
        "base_url": mmembed_emulator.url,
        "api_key_env_var": "MY_VERTEX_KEY",
    }
    jina = make_ef("jina", mmembed_emulator, image_side=640, cache=None)
    assert jina.get_config()["model"] == "jina-clip-v2" and jina.get_config()["dimensions"] == 1024
    for ef in (nomic, vertex, jina):
        assert CANARY not in repr(ef) and CANARY not in json.dumps(ef.get_config())
        assert ef.default_space() == "cosine" and "cosine" in ef.supported_spaces()
        assert ef.is_legacy() is False
        ef.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_build_from_config_is_the_exact_inverse_of_get_config(provider: str, mmembed_emulator: Emulator) -> None:
    dimensions = {"nomic": 128, "bedrock": 1024}.get(provider, 512)  # sizes each default model can give
    if not gives(provider, dimensions):
        pytest.skip(f"the default model of {provider} cannot give {dimensions} dimensions")
    ef = make_ef(provider, mmembed_emulator, dimensions=dimensions, image_side=600)
    config = ef.get_config()
    rebuilt = type(ef).build_from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(ef)
    assert rebuilt.get_config() == config
    assert type(ef).build_from_config(rebuilt.get_config()).get_config() == config
    assert repr(rebuilt) == repr(ef)
    again = type(ef)(**config, api_key=CANARY)  # every config key is also a constructor option
    assert again.get_config() == config
    ef.close()
    again.close()


def test_a_rebuilt_function_reads_the_key_from_the_env_on_first_use(
    mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_ef("jina", mmembed_emulator).get_config()
    rebuilt = JinaMultimodalEmbeddingFunction.build_from_config(config)  # no key anywhere: building still works
    with pytest.raises(ConfigurationError, match="JINA_API_KEY"):
        rebuilt(["red"])
    monkeypatch.setenv("JINA_API_KEY", "first-key")
    assert len(rebuilt(["red"])) == 1
    again = JinaMultimodalEmbeddingFunction.build_from_config(config)
    assert again.embedder is rebuilt.embedder  # Chroma rebuilds per call: one client (pool, rate limit) serves all
    monkeypatch.setenv("JINA_API_KEY", "rotated-key")
    assert JinaMultimodalEmbeddingFunction.build_from_config(config).embedder is not rebuilt.embedder
    assert mmembed_emulator.requests[-1].headers["authorization"] == "Bearer first-key"


def test_validate_config_accepts_its_own_and_rejects_the_rest(mmembed_emulator: Emulator) -> None:
    for provider in PROVIDERS:
        ef = make_ef(provider, mmembed_emulator)
        type(ef).validate_config(ef.get_config())
        ef.close()
    good = make_ef("jina", mmembed_emulator).get_config()
    bad_configs = [
        ({**good, "api_key": CANARY}, "unknown config keys"),
        ({**good, "text_model": "x"}, "unknown config keys"),
        ({k: v for k, v in good.items() if k != "model"}, "'model'"),
        ({**good, "api_key_env_var": ""}, "api_key_env_var"),
        ({**good, "dimensions": "256"}, "dimensions"),
        ({**good, "dimensions": True}, "dimensions"),
        ({**good, "image_side": 0}, "image_side"),
        ({**good, "base_url": "ftp://example.com"}, "base_url"),
    ]
    for config, message in bad_configs:
        with pytest.raises(ConfigurationError, match=message):
            JinaMultimodalEmbeddingFunction.validate_config(config)
        with pytest.raises(ConfigurationError):
            JinaMultimodalEmbeddingFunction.build_from_config(config)
    with pytest.raises(ConfigurationError, match="dict"):
        JinaMultimodalEmbeddingFunction.validate_config([])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'project_id'"):
        VertexMultimodalEmbeddingFunction.validate_config({**good, "project_id": 7})


def test_updates_may_not_change_model_or_dimensions(store: Any, mmembed_emulator: Emulator) -> None:
    ef = make_ef("nomic", mmembed_emulator)
    old = ef.get_config()
    ef.validate_config_update(old, {**old, "base_url": "https://gateway.example", "image_side": 400})
    ef.validate_config_update(old, {"api_key_env_var": "OTHER_KEY"})
    for change in ({"text_model": "nomic-embed-text-v1"}, {"vision_model": "x"}, {"dimensions": 256}):
        with pytest.raises(ConfigurationError, match="cannot change"):
            ef.validate_config_update(old, {**old, **change})
    # and through Chroma itself
    col = store.create_collection("updates", embedding_function=ef)
    with pytest.raises(ConfigurationError, match="dimensions cannot change"):
        col.modify(configuration={"embedding_function": make_ef("nomic", mmembed_emulator, dimensions=256)})
    col.modify(configuration={"embedding_function": make_ef("nomic", mmembed_emulator, image_side=300)})
    assert store.get_collection("updates").configuration_json["embedding_function"]["config"]["image_side"] == 300
    ef.close()


def test_the_base_class_is_not_a_function() -> None:
    with pytest.raises(TypeError):
        MultimodalEmbeddingFunction()


# -- the example -------------------------------------------------------------------------------------


def test_example_runs_offline() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "chroma_mixed.py")],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "emulator" in proc.stdout.lower()


# -- a real `chroma run` server on loopback ----------------------------------------------------------


def http_client(server: ChromaServer) -> AbstractContextManager[Any]:
    return shared_http_client(server, settings=SETTINGS)


@pytest.fixture(scope="module")
def served(chroma_server: ChromaServer, emulator: Emulator, photos: Photos) -> ChromaServer:
    """The server with the same three photo collections as the embedded store, added through HttpClient."""
    with http_client(chroma_server) as client:
        for provider in IMAGE_PROVIDERS:
            fill_photo_collection(client, provider, emulator, photos)
    return chroma_server


class TestChromaServer:
    """Against `chroma run` through HttpClient: the same behaviour as the embedded store."""

    def test_every_image_form_is_found_first_by_its_colour(self, served: ChromaServer, emulator: Emulator) -> None:
        with http_client(served) as client:
            for provider in IMAGE_PROVIDERS:
                ef = make_ef(provider, emulator)
                col = client.get_collection(f"photos-{provider}", embedding_function=ef, data_loader=ImageURILoader())
                assert top_image_per_colour(col) == EXPECTED_TOP
                ef.close()

    def test_reopened_from_another_process_and_no_key_on_the_server(
        self, served: ChromaServer, emulator: Emulator
    ) -> None:
        check_reopened(reopen_in_new_process({"host": served.host, "port": served.port}, emulator))
        assert files_containing(served.path, b"mmembed_vertex"), "the scan must see where configs live"
        assert files_containing(served.path, CANARY.encode()) == []

    def test_mixed_collection(self, served: ChromaServer, emulator: Emulator, photos: Photos) -> None:
        with http_client(served) as client:
            ef = make_ef("vertex", emulator)
            col = client.create_collection("mixed-vertex", embedding_function=ef)
            add_mixed(col, ["t-red", "t-blue", "i-red", "i-blue"], ["red", "blue", photos.red_jpeg, photos.blue_array])
            result = query_mixed(col, query_texts=["red"], n_results=2)
            assert set(result["ids"][0]) == {"t-red", "i-red"}
            ef.close()
