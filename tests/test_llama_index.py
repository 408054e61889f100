"""mmembed.llama_index against the emulator: MultiModalVectorStoreIndex over Chroma, batching on the wire,
real async with bounded concurrency, the image forms LlamaIndex passes, and a key that never leaks."""

from __future__ import annotations

import asyncio
import base64
import doctest
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from llama_index.core import StorageContext
from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageDocument, ImageNode, TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore
from PIL import Image

import mmembed.llama_index
from conftest import DEFAULT_DIMS, IMAGE_PROVIDERS, PROVIDERS, jpeg_bytes
from mmembed import ConfigurationError, EmbeddingCache, InputError, UnsafeURLError
from mmembed.llama_index import (
    EmbedderMultiModalEmbedding,
    JinaMultiModalEmbedding,
    NomicMultiModalEmbedding,
    VertexMultiModalEmbedding,
    embedding_class,
)
from mmembed.providers import PROVIDERS as REGISTRY
from mmembed.testing import Emulator, RecordedRequest, colour_photo

CANARY = "canary-key-7f3a9"
CLASSES: dict[str, type[EmbedderMultiModalEmbedding]] = {
    "nomic": NomicMultiModalEmbedding,
    "jina": JinaMultiModalEmbedding,
    "vertex": VertexMultiModalEmbedding,
    **{name: embedding_class(name) for name in PROVIDERS},  # the rest, from the registry
}
COLOURS = ("red", "blue", "green", "yellow")
TEXTS = ("The sea was a deep blue that day", "A red fire truck parked outside", "Fresh green grass in the park")
ROOT = Path(__file__).resolve().parents[1]


# Providers whose requests carry images in a body images_in() reads.
IMAGES_BY_BODY = ("voyage", "cohere", "gemini", "bedrock", "twelvelabs", "vllm", "infinity", "nim")


def make(provider: str, emulator: Emulator, **options: Any) -> EmbedderMultiModalEmbedding:
    """A LlamaIndex embedding for ``provider`` pointed at ``emulator``, without the client-side rate limit."""
    for key, value in REGISTRY[provider].test_options.items():
        options.setdefault(key, value)
    options.setdefault("api_key", CANARY)
    options.setdefault("requests_per_minute", 60_000)
    options.setdefault("max_retries", 1)
    embed_model = CLASSES[provider](base_url=emulator.url_for(provider), **options)
    _made.append(embed_model)
    return embed_model


_made: list[EmbedderMultiModalEmbedding] = []


@pytest.fixture(autouse=True)
def _close_embed_models() -> Iterator[None]:
    """Close every embedding a test made, so no pooled connection outlives its test."""
    yield
    while _made:
        _made.pop().close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four colour photos (960x720 JPEG files), by colour."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for colour in COLOURS:
        paths[colour] = folder / f"{colour}.jpg"
        paths[colour].write_bytes(jpeg_bytes(colour_photo(colour, size=(960, 720))))
    return paths


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def photo_server(photos: dict[str, Path]) -> Iterator[str]:
    """Base URL of a loopback HTTP server serving the photos' folder."""
    folder = next(iter(photos.values())).parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def image_requests(emulator: Emulator, provider: str) -> list[RecordedRequest]:
    """Requests that carried images (Nomic's image endpoint; Jina/Vertex bodies with image inputs)."""
    out = []
    for req in emulator.requests:
        if provider == "nomic" and req.path == "/v1/embedding/image":
            out.append(req)
        elif provider == "jina" and any("image" in i for i in req.json["input"]):
            out.append(req)
        elif provider == "vertex" and any("image" in i for i in req.json["instances"]):
            out.append(req)
        elif provider in IMAGES_BY_BODY and images_in(req):
            out.append(req)
    return out


def images_in(req: RecordedRequest) -> int:
    if req.provider == "nomic":
        return len([f for f in req.files if f[0] == "images"]) + len(req.form.get("urls", []))
    if req.provider == "jina":
        return sum("image" in i for i in req.json["input"])
    if req.provider == "bedrock":  # Nova: one item per InvokeModel call
        return int("image" in req.json.get("singleEmbeddingParams", {}))
    if req.provider == "twelvelabs":  # one item per call
        return int(req.json.get("input_type") in ("image", "text_image"))
    if req.provider in ("voyage", "cohere"):
        return sum(s["type"].startswith("image") for i in req.json["inputs"] for s in i["content"])
    if req.provider in ("vllm", "infinity", "nim"):  # images as data: URIs in the JSON
        return json.dumps(req.json).count('"data:image/') + json.dumps(req.json).count("'data:image/")
    if req.provider == "gemini":  # one content per item, images as inlineData parts
        return sum("inlineData" in p for r in req.json["requests"] for p in r["content"]["parts"])
    return sum("image" in i for i in req.json["instances"])


# -- acceptance 1: MultiModalVectorStoreIndex over Chroma ----------------------------------------------------


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_index_over_chroma_finds_the_yellow_photo_and_the_blue_text(
    provider: str, photos: dict[str, Path], mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    embed_model = make(provider, mmembed_emulator)
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    storage = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=client.create_collection("texts")),
        image_store=ChromaVectorStore(chroma_collection=client.create_collection("images")),
    )
    nodes: list[TextNode] = [TextNode(text=t) for t in TEXTS]
    nodes += [ImageNode(image_path=str(photos[c]), metadata={"colour": c}) for c in COLOURS]

    index = MultiModalVectorStoreIndex(
        nodes, storage_context=storage, embed_model=embed_model, image_embed_model=embed_model
    )
    retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=4)
    found_images = retriever.text_to_image_retrieve("yellow")
    found_texts = retriever.text_retrieve("blue")

    assert found_images[0].node.metadata["colour"] == "yellow"
    assert len(found_images) == 4
    assert found_texts[0].node.get_content() == TEXTS[0]
    # On the wire: the four photos went out together, not one request per image.
    sent = image_requests(mmembed_emulator, provider)
    # One instance (item) per request: Vertex, Bedrock, Twelve Labs; vLLM: one conversation per request.
    one_each = ("vertex", "bedrock", "twelvelabs", "vllm")
    expected = [1, 1, 1, 1] if provider in one_each else [4]
    assert [images_in(r) for r in sent] == expected
    if provider == "nomic":
        text_reqs = [r.json for r in mmembed_emulator.requests if r.path == "/v1/embedding/text"]
        assert [(len(b["texts"]), b["task_type"]) for b in text_reqs] == [
            (3, "search_document"),  # the three text nodes in one request
            (1, "search_query"),  # "yellow"
            (1, "search_query"),  # "blue"
        ]
    if provider == "jina":
        tasks = [r.json.get("task") for r in mmembed_emulator.requests]
        assert tasks.count("retrieval.query") == 2  # both queries went out as queries


@pytest.mark.parametrize("kind", ["nodes", "documents"])
def test_images_from_base64_path_and_url_all_embed(
    kind: str, photos: dict[str, Path], photo_server: str, mmembed_emulator: Emulator
) -> None:
    embed_model = make("nomic", mmembed_emulator)
    sources = [
        {"image": base64.b64encode(photos["red"].read_bytes()).decode(), "metadata": {"colour": "red"}},
        {"image_path": str(photos["blue"]), "metadata": {"colour": "blue"}},
        {"image_url": f"{photo_server}/green.jpg", "metadata": {"colour": "green"}},
    ]
    if kind == "nodes":
        nodes = [ImageNode(**source) for source in sources]
        index = MultiModalVectorStoreIndex(nodes, embed_model=embed_model, image_embed_model=embed_model)
    else:  # ImageDocument is a Document in llama-index-core 0.14: from_documents makes the ImageNodes
        documents = [ImageDocument(**source) for source in sources]
        index = MultiModalVectorStoreIndex.from_documents(
            documents, embed_model=embed_model, image_embed_model=embed_model
        )
    retriever = index.as_retriever(image_similarity_top_k=1)

    for colour in ("red", "blue", "green"):
        assert retriever.text_to_image_retrieve(colour)[0].node.metadata["colour"] == colour
    # LlamaIndex resolves image (base64) and image_url to BytesIO, image_path to a str: all three were
    # uploaded, downscaled, in one multipart request.
    (sent,) = image_requests(mmembed_emulator, "nomic")
    parts = [f for f in sent.files if f[0] == "images"]
    assert len(parts) == 3
    assert all(min(Image.open(io.BytesIO(p[3])).size) == 336 for p in parts)


# -- what LlamaIndex passes: str paths, str URLs, BytesIO ---------------------------------------------------


def test_bytesio_uploads_downscaled_and_str_names_an_image(
    photos: dict[str, Path], photo_server: str, mmembed_emulator: Emulator
) -> None:
    embed_model = make("nomic", mmembed_emulator)
    big = jpeg_bytes(colour_photo("red", size=(1600, 1200)))
    buffer = io.BytesIO(big)
    buffer.seek(len(big))  # wherever the position was left, the whole buffer is the image

    from_bytes = embed_model.get_image_embedding(buffer)
    from_path = embed_model.get_image_embedding(str(photos["red"]))
    from_url = embed_model.get_image_embedding(f"{photo_server}/red.jpg")

    first, second, third = mmembed_emulator.requests
    (part,) = [f for f in first.files if f[0] == "images"]
    assert Image.open(io.BytesIO(part[3])).size == (448, 336)  # shortest side 336, aspect kept
    assert len(part[3]) < len(big) / 5
    assert second.form["model"] == ["nomic-embed-vision-v1.5"]
    assert [f[0] for f in second.files] == ["images"]  # a str path is an image, uploaded
    assert third.form["urls"] == [f"{photo_server}/red.jpg"]  # a URL goes as a URL: Nomic fetches it
    query = np.array(embed_model.get_query_embedding("red"))
    blue = np.array(embed_model.get_image_embedding(str(photos["blue"])))
    for vector in (from_bytes, from_path, from_url):
        assert query @ np.array(vector) > query @ blue


def test_vertex_downloads_str_urls_only_when_private_urls_are_allowed(
    photo_server: str, mmembed_emulator: Emulator
) -> None:
    url = f"{photo_server}/yellow.jpg"
    with pytest.raises(UnsafeURLError):
        make("vertex", mmembed_emulator).get_image_embedding(url)
    assert mmembed_emulator.requests == []

    vector = make("vertex", mmembed_emulator, allow_private_urls=True).get_image_embedding(url)
    assert len(vector) == DEFAULT_DIMS["vertex"]
    (sent,) = mmembed_emulator.requests
    image = sent.json["instances"][0]["image"]
    assert image["mimeType"] == "image/jpeg"
    assert min(Image.open(io.BytesIO(base64.b64decode(image["bytesBase64Encoded"]))).size) == 512


def test_a_bad_image_in_a_batch_names_its_index(photos: dict[str, Path], mmembed_emulator: Emulator) -> None:
    embed_model = make("jina", mmembed_emulator)
    with pytest.raises(InputError) as info:
        embed_model.get_image_embedding_batch([str(photos["red"]), io.BytesIO(b"not an image")])
    assert info.value.index == 1


# -- batching: LlamaIndex's batch methods become few, full requests -----------------------------------------


def test_batch_methods_fill_requests_up_to_the_provider_caps(
    photos: dict[str, Path], mmembed_emulator: Emulator
) -> None:
    embed_model = make("nomic", mmembed_emulator)
    assert embed_model.embed_batch_size == 2048

    vectors = embed_model.get_image_embedding_batch([str(photos[c]) for c in COLOURS])
    texts = [f"note number {i}" for i in range(25)]
    text_vectors = embed_model.get_text_embedding_batch(texts)

    assert np.array(vectors).shape == (4, 768)
    assert np.array(text_vectors).shape == (25, 768)
    image_req, *text_reqs = mmembed_emulator.requests
    assert images_in(image_req) == 4  # one image request for the four photos
    assert sorted(len(r.json["texts"]) for r in text_reqs) == [5, 10, 10]  # Nomic's cap is 10 texts, each text once
    assert sorted(t for r in text_reqs for t in r.json["texts"]) == sorted(texts)


def test_options_and_base_class_kwargs_are_forwarded(photos: dict[str, Path], mmembed_emulator: Emulator) -> None:
    debug = LlamaDebugHandler()
    embed_model = make(
        "jina",
        mmembed_emulator,
        embed_batch_size=2,
        callback_manager=CallbackManager([debug]),
        dimensions=256,
        max_concurrency=3,
    )
    vectors = embed_model.get_image_embedding_batch([str(photos[c]) for c in COLOURS])

    assert np.array(vectors).shape == (4, 256)
    assert [images_in(r) for r in mmembed_emulator.requests] == [2, 2]  # LlamaIndex chopped at 2
    assert all(r.json["dimensions"] == 256 for r in mmembed_emulator.requests)
    assert embed_model.embedder.provider.concurrency == 3
    events = debug.get_event_pairs()
    assert len(events) == 2
    assert CANARY not in repr([e.payload for pair in events for e in pair])


def test_cache_option_skips_items_embedded_before(
    photos: dict[str, Path], mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    cache_path = tmp_path / "cache.sqlite"
    paths = [str(photos[c]) for c in COLOURS]
    first = make("jina", mmembed_emulator, cache=cache_path).get_image_embedding_batch(paths)
    assert len(mmembed_emulator.requests) == 1

    again = make("jina", mmembed_emulator, cache=EmbeddingCache(cache_path))
    np.testing.assert_allclose(again.get_image_embedding_batch(paths), first, rtol=1e-6)
    assert len(mmembed_emulator.requests) == 1  # nothing sent the second time
    assert json.loads(again.to_json())["cache"] == str(cache_path)


# -- acceptance 2: real async, bounded --------------------------------------------------------------------


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
async def test_async_methods_agree_with_sync_and_stay_in_bounds(
    provider: str, photos: dict[str, Path], mmembed_emulator_factory: Any
) -> None:
    emulator = mmembed_emulator_factory(latency=0.02, max_concurrency=2)  # a third request in flight gets 429
    embed_model = make(provider, emulator, max_concurrency=2)
    paths = [str(photos[c]) for c in COLOURS]

    one = await embed_model.aget_image_embedding(paths[0])
    batch = await embed_model.aget_image_embedding_batch(paths)
    query = await embed_model.aget_query_embedding("yellow")
    texts = await embed_model.aget_text_embedding_batch(list(TEXTS))

    np.testing.assert_allclose(one, embed_model.get_image_embedding(paths[0]), atol=1e-6)
    np.testing.assert_allclose(batch, embed_model.get_image_embedding_batch(paths), atol=1e-6)
    np.testing.assert_allclose(query, embed_model.get_query_embedding("yellow"), atol=1e-6)
    np.testing.assert_allclose(texts, embed_model.get_text_embedding_batch(list(TEXTS)), atol=1e-6)
    assert int(np.argmax(np.array(batch) @ np.array(query))) == COLOURS.index("yellow")

    emulator.clear()
    calls = [embed_model.aget_query_embedding(f"query {i}") for i in range(8)]
    calls += [embed_model.aget_image_embedding(p) for p in paths]
    calls += [embed_model.aget_image_embedding_batch(paths), embed_model.aget_text_embedding_batch(list(TEXTS))]
    results = await asyncio.gather(*calls)

    assert len(results) == 14
    assert emulator.stats.max_in_flight == 2  # concurrent, and never more than the bound
    assert emulator.stats.rate_limited == 0
    assert embed_model.embedder.provider.transport.stats.max_in_flight <= 2


async def test_async_batch_never_blocks_the_event_loop(photos: dict[str, Path], mmembed_emulator_factory: Any) -> None:
    emulator = mmembed_emulator_factory(latency=0.5)
    embed_model = make("nomic", emulator)
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    vectors = await embed_model.aget_image_embedding_batch([str(photos[c]) for c in COLOURS])
    elapsed = time.monotonic() - started
    done.set()
    await ticking

    assert len(vectors) == 4
    assert elapsed >= 0.5  # the request really waited on the emulator...
    assert len(ticks) >= 20  # ...while the loop kept running
    assert max(np.diff(ticks)) < 0.25
    assert len(emulator.requests) == 1


# -- acceptance 3: the key never leaks ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_api_key_appears_in_no_representation(provider: str, mmembed_emulator: Emulator) -> None:
    embed_model = make(provider, mmembed_emulator, api_key=CANARY)

    shown = {
        "repr": repr(embed_model),
        "str": str(embed_model),
        "to_dict": repr(embed_model.to_dict()),
        "to_json": embed_model.to_json(),
        "model_dump": repr(embed_model.model_dump()),
        "model_dump_json": embed_model.model_dump_json(),
        "to_payload": repr(embed_model.to_payload()),
        "embedder": repr(embed_model.embedder),
    }
    assert {name: CANARY in text for name, text in shown.items()} == dict.fromkeys(shown, False)
    assert "api_key" not in embed_model.to_dict()
    # ...yet the key is what authenticates the requests.
    embed_model.get_text_embedding("hello")
    (sent,) = mmembed_emulator.requests
    google = provider in ("vertex", "gemini")  # Google's APIs take the key in x-goog-api-key, never a Bearer
    own = "x-goog-api-key" if google else "x-api-key" if provider == "twelvelabs" else "authorization"
    assert sent.headers.get(own) == (CANARY if own != "authorization" else f"Bearer {CANARY}")


def test_key_from_the_environment_and_round_trip(monkeypatch: pytest.MonkeyPatch, mmembed_emulator: Emulator) -> None:
    monkeypatch.setenv("JINA_API_KEY", "env-key-1")
    monkeypatch.setenv("MY_JINA_KEY", "env-key-2")
    default_var = JinaMultiModalEmbedding(base_url=mmembed_emulator.url)
    other_var = JinaMultiModalEmbedding(base_url=mmembed_emulator.url, api_key_env_var="MY_JINA_KEY", dimensions=64)
    rebuilt = JinaMultiModalEmbedding.from_json(other_var.to_json())
    _made.extend([default_var, other_var, rebuilt])

    default_var.get_query_embedding("a")
    other_var.get_query_embedding("a")
    assert rebuilt.dimensions == 64 and rebuilt.api_key_env_var == "MY_JINA_KEY"
    np.testing.assert_allclose(rebuilt.get_query_embedding("a"), other_var.get_query_embedding("a"), atol=1e-6)
    keys = [r.headers["authorization"] for r in mmembed_emulator.requests]
    assert keys == ["Bearer env-key-1", "Bearer env-key-2", "Bearer env-key-2", "Bearer env-key-2"]


def test_configuration_errors_say_how_to_fix_them(mmembed_emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError, match=r"JINA_API_KEY.*api_key="):
        JinaMultiModalEmbedding(base_url=mmembed_emulator.url)
    with pytest.raises(ConfigurationError, match="model="):
        make("jina", mmembed_emulator, model_name="jina-clip-v1")
    with pytest.raises(ConfigurationError, match="project"):
        make("vertex", mmembed_emulator, project_id=None)


# -- the LlamaIndex contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_follows_the_llama_index_contract(provider: str, mmembed_emulator: Emulator) -> None:
    embed_model = make(provider, mmembed_emulator)
    cls = type(embed_model)

    assert isinstance(embed_model, MultiModalEmbedding)
    assert cls.class_name() == f"mmembed_{cls.__name__}"
    assert embed_model.to_dict()["class_name"] == cls.class_name()
    own = cls.model_fields.keys() - MultiModalEmbedding.model_fields.keys()
    assert all(cls.model_fields[name].description for name in own)
    assert cls.model_fields["api_key"].exclude and not cls.model_fields["api_key"].repr
    assert embed_model.model_name != "unknown"
    assert len(embed_model.get_text_embedding("x")) == DEFAULT_DIMS[provider]


def test_module_docstring_example_runs() -> None:
    assert doctest.testmod(mmembed.llama_index).failed == 0


# -- packaging: an optional extra, imported lazily ------------------------------------------------------------

BLOCK_LLAMA_INDEX = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "llama_index" or name.startswith("llama_index."):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_import_mmembed_never_imports_llama_index() -> None:
    code = "import sys, mmembed, mmembed.testing; print(sorted(m for m in sys.modules if 'llama_index' in m))"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_llama_index_says_which_extra_to_install() -> None:
    result = run_python(BLOCK_LLAMA_INDEX + "import mmembed\nimport mmembed.llama_index\n")
    assert result.returncode == 1
    assert "pip install 'mmembed[llama-index]'" in result.stderr


def test_example_runs_offline_on_the_emulator() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("GOOGLE_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llama_index_mixed.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "emulator" in result.stdout.lower()
    assert "yellow" in result.stdout
