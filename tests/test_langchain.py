"""mmembed.langchain against the emulator, inside the real langchain-chroma ``Chroma`` store: texts and images
in one persistent store, image and text search, a reopened store in a new process, real async, shrunk uploads,
batching on the wire, and a key that never leaks."""

from __future__ import annotations

import asyncio
import base64
import copy
import doctest
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from langchain_chroma import Chroma
from langchain_core.embeddings import Embeddings
from PIL import Image
from pydantic import ValidationError

import mmembed.langchain
from conftest import DEFAULT_DIMS, IMAGE_PROVIDERS, PROVIDERS, jpeg_bytes
from mmembed import ConfigurationError, EmbeddingCache, InputError, UnsafeURLError
from mmembed.chroma import query_mixed
from mmembed.langchain import (
    EmbedderEmbeddings,
    JinaMultimodalEmbeddings,
    NomicMultimodalEmbeddings,
    VertexMultimodalEmbeddings,
    embeddings_class,
)
from mmembed.options import options_for
from mmembed.providers import PROVIDERS as REGISTRY
from mmembed.testing import Emulator, RecordedRequest, colour_photo

CANARY = "canary-key-5e1d7"
CLASSES: dict[str, type[EmbedderEmbeddings]] = {  # the acceptance list, by name
    "nomic": NomicMultimodalEmbeddings,
    "jina": JinaMultimodalEmbeddings,
    "vertex": VertexMultimodalEmbeddings,
}
COLOURS = ("red", "blue", "green", "yellow")
TEXTS = ("The sea was a deep blue that day", "A red fire truck parked outside", "Fresh green grass in the park")
ROOT = Path(__file__).resolve().parents[1]
IMAGE = {"modality": "image"}
TEXT = {"modality": "text"}


def make(provider: str, emulator: Emulator, **options: Any) -> EmbedderEmbeddings:
    """LangChain embeddings for ``provider`` pointed at ``emulator``, without the client-side rate limit."""
    for key, value in REGISTRY[provider].test_options.items():
        options.setdefault(key, value)
    options.setdefault("api_key", CANARY)
    options.setdefault("requests_per_minute", 60_000)
    options.setdefault("max_retries", 1)
    embeddings = embeddings_class(provider)(base_url=emulator.url_for(provider), **options)
    _made.append(embeddings)
    return embeddings


_made: list[EmbedderEmbeddings] = []


@pytest.fixture(autouse=True)
def _close_embeddings() -> Iterator[None]:
    """Close every embeddings object a test made, so no pooled connection outlives its test."""
    yield
    while _made:
        _made.pop().close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four colour photos (1600x1200 JPEG files of a few hundred kB), by colour."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for colour in COLOURS:
        paths[colour] = folder / f"{colour}.jpg"
        paths[colour].write_bytes(jpeg_bytes(colour_photo(colour, size=(1600, 1200))))
    return paths


@pytest.fixture(scope="module")
def red_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another red photo (other lighting and shapes), to search the store with."""
    path = tmp_path_factory.mktemp("probe") / "probe-red.jpg"
    path.write_bytes(jpeg_bytes(colour_photo("red", size=(1200, 900), seed=7)))
    return path


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


def images_in(req: RecordedRequest) -> int:
    """How many images one request carried (Nomic: uploaded files or URLs; Jina, Vertex: image inputs)."""
    if req.provider == "nomic":
        return len([f for f in req.files if f[0] == "images"]) + len(req.form.get("urls", []))
    if req.provider == "jina":
        return sum("image" in i for i in req.json["input"])
    if req.provider == "vertex":
        return sum("image" in i for i in req.json["instances"])
    raise NotImplementedError(req.provider)


def sent_with_key(req: RecordedRequest) -> bool:
    """Whether the request carried the canary key (in whichever header its provider uses)."""
    return any(CANARY in value for value in req.headers.values())


def fill(store: Chroma, photos: dict[str, Path]) -> None:
    """Texts, then photos, as a LangChain user would add them, each tagged with its modality."""
    store.add_texts(list(TEXTS), metadatas=[TEXT for _ in TEXTS], ids=[f"t{i}" for i in range(len(TEXTS))])
    store.add_images(
        [str(photos[c]) for c in COLOURS], metadatas=[{**IMAGE, "colour": c} for c in COLOURS], ids=list(COLOURS)
    )


# -- acceptance: a persistent langchain-chroma store, for each provider ---------------------------------------


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_mixed_store_finds_photos_by_photo_and_by_text(
    provider: str, photos: dict[str, Path], red_probe: Path, mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    embeddings = make(provider, mmembed_emulator)
    db = tmp_path / "db"
    store = Chroma("media", embedding_function=embeddings, persist_directory=str(db))
    fill(store, photos)

    # add_images stored each file, base64-encoded, as the record's page content.
    stored = store.get(ids=["yellow"], include=["documents", "metadatas"])
    assert base64.b64decode(stored["documents"][0]) == photos["yellow"].read_bytes()
    assert stored["metadatas"][0] == {"modality": "image", "colour": "yellow"}

    # image -> image: similarity_search_by_image passes embed_image(uris=[uri])[0] as the query vector.
    (by_photo,) = store.similarity_search_by_image(str(red_probe), k=1)
    assert by_photo.metadata["colour"] == "red"
    # text -> image under a metadata filter.
    (by_text,) = store.similarity_search("something yellow", k=1, filter=IMAGE)
    assert by_text.metadata["colour"] == "yellow"
    # Unfiltered, the modality gap of these models puts every text above every photo (models with one encoder
    # for both, such as Voyage's, hardly have one).
    if provider in CLASSES:
        plain = store.similarity_search("something yellow", k=len(TEXTS) + 1)
        assert [d.metadata["modality"] for d in plain] == ["text"] * len(TEXTS) + ["image"]

    sent = mmembed_emulator.requests
    assert [r.status for r in sent if r.status is None or not 200 <= r.status < 300] == []  # 0 wire violations
    assert all(sent_with_key(r) for r in sent)
    # Uploads are shrunk: all the requests together (texts too) weigh far less per photo than one file. (Models
    # that see up to 2 MP, such as Voyage's, take these 1.9 MP photos nearly whole.)
    per_photo = sum(r.body_size for r in sent) / (len(COLOURS) + 1)
    smallest_file = min(p.stat().st_size for p in [*photos.values(), red_probe])
    if provider in CLASSES:
        assert per_photo < smallest_file / 4, (per_photo, smallest_file)
    # One request for the four photos (Vertex: one instance per request), then one for the probe.
    expected = {"nomic": [4, 1], "jina": [4, 1], "vertex": [1, 1, 1, 1, 1]}.get(provider)
    if expected is not None:
        assert [images_in(r) for r in sent if images_in(r)] == expected
    # The text query went out with the provider's query task.
    if provider == "nomic":
        tasks = [r.json["task_type"] for r in sent if r.path == "/v1/embedding/text"]
        assert tasks == ["search_document", "search_query", "search_query"]
    if provider == "jina":
        tasks = [r.json.get("task") for r in sent if not images_in(r)]
        assert tasks == [None, "retrieval.query", "retrieval.query"]  # v2 documents: no task

    # Persistence: a new store object over the same directory finds the same things.
    del store
    reopened = Chroma("media", embedding_function=make(provider, mmembed_emulator), persist_directory=str(db))
    assert len(reopened.get()["ids"]) == len(TEXTS) + len(COLOURS)
    assert reopened.similarity_search_by_image(str(red_probe), k=1)[0].metadata["colour"] == "red"
    assert reopened.similarity_search("something yellow", k=1, filter=IMAGE)[0].metadata["colour"] == "yellow"


REOPEN = """
import json, os, sys
from langchain_chroma import Chroma
from mmembed.langchain import embeddings_class

provider, url, db, probe, options = sys.argv[1:]
options = json.loads(options)
embeddings = embeddings_class(provider)(base_url=url, requests_per_minute=60000, **options)  # key from the env
store = Chroma("media", embedding_function=embeddings, persist_directory=db)
print(json.dumps({
    "count": len(store.get()["ids"]),
    "by_photo": store.similarity_search_by_image(probe, k=1)[0].metadata,
    "by_text": store.similarity_search("something yellow", k=1, filter={"modality": "image"})[0].metadata,
    "repr": repr(embeddings),
}))
"""


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_store_reopens_in_a_new_process_with_the_key_only_in_the_environment(
    provider: str, photos: dict[str, Path], red_probe: Path, mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    fill(Chroma("media", embedding_function=make(provider, mmembed_emulator), persist_directory=str(db)), photos)
    mmembed_emulator.clear()

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("GOOGLE_")}
    env[REGISTRY[provider].env_var] = CANARY
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", REOPEN, provider, mmembed_emulator.url_for(provider), str(db),
         str(red_probe), json.dumps(dict(REGISTRY[provider].test_options))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["count"] == len(TEXTS) + len(COLOURS)
    assert found["by_photo"]["colour"] == "red"
    assert found["by_text"]["colour"] == "yellow"
    assert CANARY not in result.stdout + result.stderr
    sent = mmembed_emulator.requests
    assert len(sent) == 2 and all(r.status == 200 for r in sent)
    assert all(sent_with_key(r) for r in sent)  # the key came from the child's environment
    for path in db.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_image_search_with_relevance_scores_needs_the_vector_by_hand(
    photos: dict[str, Path], red_probe: Path, mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    """langchain-chroma 1.1's similarity_search_by_image_with_relevance_score passes embed_image's whole list
    (a list of one vector) as one vector, which Chroma refuses (langchain-ai/langchain#33851);
    similarity_search_by_image takes ``[0]``. The
    workaround is one line: embed the probe and search by that vector."""
    embeddings = make("jina", mmembed_emulator)
    store = Chroma(
        "media",
        embedding_function=embeddings,
        persist_directory=str(tmp_path / "db"),
        collection_configuration={"hnsw": {"space": "cosine"}},
    )
    fill(store, photos)

    with pytest.raises(ValueError, match="Expected embeddings"):  # if this starts passing, upstream fixed it
        store.similarity_search_by_image_with_relevance_score(str(red_probe), k=1)
    ((doc, score),) = store.similarity_search_by_vector_with_relevance_scores(
        embeddings.embed_image([str(red_probe)])[0], k=1
    )
    assert doc.metadata["colour"] == "red"
    assert 0 < score <= 1


def test_query_mixed_fuses_rankings_over_the_stores_collection(
    photos: dict[str, Path], mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    embeddings = make("nomic", mmembed_emulator)
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    fill(Chroma("media", embedding_function=embeddings, client=client), photos)

    collection = client.get_collection("media")  # the store's collection, through the public client API
    hits = query_mixed(collection, query_texts=["banana"], n_results=4, embedder=embeddings.embedder)

    # No text is about bananas: the yellow photo leads, and nothing else stands out (RRF would give a text rank 2).
    assert hits["ids"][0][0] == "yellow" and hits["scores"][0][0] > 2 > max(hits["scores"][0][1:])
    rrf = query_mixed(collection, query_texts=["banana"], n_results=4, embedder=embeddings.embedder, fusion="rrf")
    modalities = [m["modality"] for m in rrf["metadatas"][0]]
    assert modalities[:2] in (["text", "image"], ["image", "text"])  # RRF: the best of each, side by side
    assert rrf["ids"][0][modalities.index("image")] == "yellow"
    assert rrf["rrf_scores"] == rrf["scores"] and "rrf_scores" not in hits
    sent = [r for r in mmembed_emulator.requests if r.path == "/v1/embedding/text"]
    assert sent[-1].json == {**sent[-1].json, "texts": ["banana"], "task_type": "search_query"}


def test_urls_are_images_too(photos: dict[str, Path], photo_server: str, mmembed_emulator: Emulator) -> None:
    url = f"{photo_server}/yellow.jpg"
    nomic = make("nomic", mmembed_emulator)
    from_url, from_path = nomic.embed_image([url, str(photos["yellow"])])
    by_url, by_upload = sorted(mmembed_emulator.requests, key=lambda r: len(r.files))
    assert by_url.form["urls"] == [url] and by_url.files == []  # Nomic fetches URLs itself
    assert [f[0] for f in by_upload.files] == ["images"]  # and a path is uploaded
    assert np.dot(from_url, from_path) > 0.99

    with pytest.raises(UnsafeURLError):  # Vertex downloads here, under the URL policy
        make("vertex", mmembed_emulator).embed_image([url])
    (vector,) = make("vertex", mmembed_emulator, allow_private_urls=True).embed_image([url])
    assert len(vector) == DEFAULT_DIMS["vertex"]


def test_bad_items_name_their_index(photos: dict[str, Path], mmembed_emulator: Emulator, tmp_path: Path) -> None:
    embeddings = make("jina", mmembed_emulator)
    with pytest.raises(InputError) as info:
        embeddings.embed_image([str(photos["red"]), str(tmp_path / "missing.jpg")])
    assert info.value.index == 1
    with pytest.raises(InputError) as info:
        embeddings.embed_documents(["fine", photos["red"]])  # type: ignore[list-item]
    assert info.value.index == 1
    with pytest.raises(TypeError, match="list"):
        embeddings.embed_image(str(photos["red"]))  # type: ignore[arg-type]
    assert mmembed_emulator.requests == []


# -- batching: one Embedder call per LangChain call, split at the provider's caps -----------------------------


def test_each_call_is_batched_by_the_core(photos: dict[str, Path], mmembed_emulator: Emulator) -> None:
    embeddings = make("nomic", mmembed_emulator)
    texts = [f"note number {i}" for i in range(25)]
    calls: list[int] = []
    embed = embeddings.embedder.embed

    def counting_embed(items: Any, **kwargs: Any) -> Any:
        calls.append(len(items))
        return embed(items, **kwargs)

    embeddings.embedder.embed = counting_embed  # type: ignore[method-assign]

    assert np.array(embeddings.embed_documents(texts)).shape == (25, 768)
    assert np.array(embeddings.embed_image([str(photos[c]) for c in COLOURS])).shape == (4, 768)
    assert embeddings.embed_documents([]) == [] and embeddings.embed_image([]) == []
    assert calls == [25, 4, 0, 0]  # one Embedder call per LangChain call

    *text_reqs, image_req = mmembed_emulator.requests
    assert sorted(len(r.json["texts"]) for r in text_reqs) == [5, 10, 10]  # Nomic's cap is 10 texts
    assert sorted(t for r in text_reqs for t in r.json["texts"]) == sorted(texts)
    assert images_in(image_req) == 4
    assert {min(Image.open(io.BytesIO(f[3])).size) for f in image_req.files} == {336}


def test_options_are_forwarded(photos: dict[str, Path], mmembed_emulator: Emulator, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    embeddings = make("jina", mmembed_emulator, dimensions=256, max_concurrency=3, cache=cache)
    first = embeddings.embed_image([str(photos["red"])])
    assert len(first[0]) == 256 and embeddings.embedder.provider.concurrency == 3
    assert mmembed_emulator.requests[0].json["dimensions"] == 256

    again = make("jina", mmembed_emulator, dimensions=256, cache=EmbeddingCache(cache))
    np.testing.assert_allclose(again.embed_image([str(photos["red"])]), first, rtol=1e-6)
    assert len(mmembed_emulator.requests) == 1  # the cache answered
    assert again.model_dump()["cache"] == str(cache)


# -- async: real, bounded, never blocking the loop ------------------------------------------------------------


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
async def test_async_methods_agree_with_sync(
    provider: str, photos: dict[str, Path], mmembed_emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = mmembed_emulator_factory(latency=0.02, max_concurrency=2)  # a third request in flight gets 429
    embeddings = make(provider, emulator, max_concurrency=2)
    paths = [str(photos[c]) for c in COLOURS]

    images = await embeddings.aembed_image(paths)
    query = await embeddings.aembed_query("yellow")
    texts = await embeddings.aembed_documents(list(TEXTS))

    np.testing.assert_allclose(images, embeddings.embed_image(paths), atol=1e-6)
    np.testing.assert_allclose(query, embeddings.embed_query("yellow"), atol=1e-6)
    np.testing.assert_allclose(texts, embeddings.embed_documents(list(TEXTS)), atol=1e-6)
    assert int(np.argmax(np.array(images) @ np.array(query))) == COLOURS.index("yellow")

    emulator.clear()
    calls = [embeddings.aembed_query(f"query {i}") for i in range(6)]
    calls += [embeddings.aembed_image([p]) for p in paths]
    results = await asyncio.gather(*calls)
    assert len(results) == 10
    assert emulator.stats.max_in_flight == 2 and emulator.stats.rate_limited == 0

    # LangChain's async store methods work over them too.
    store = Chroma("media", embedding_function=embeddings, persist_directory=str(tmp_path / "db"))
    await store.aadd_texts(list(TEXTS), metadatas=[TEXT for _ in TEXTS])
    store.add_images(paths, metadatas=[{**IMAGE, "colour": c} for c in COLOURS])
    (hit,) = await store.asimilarity_search("yellow", k=1, filter=IMAGE)
    assert hit.metadata["colour"] == "yellow"


async def test_async_never_blocks_the_event_loop(photos: dict[str, Path], mmembed_emulator_factory: Any) -> None:
    emulator = mmembed_emulator_factory(latency=0.5)
    embeddings = make("nomic", emulator)
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    vectors = await embeddings.aembed_image([str(photos[c]) for c in COLOURS])
    elapsed = time.monotonic() - started
    done.set()
    await ticking

    assert len(vectors) == 4
    assert elapsed >= 0.5  # the request really waited on the emulator...
    assert len(ticks) >= 20  # ...while the loop kept running
    assert max(np.diff(ticks)) < 0.25
    assert len(emulator.requests) == 1


# -- the key never leaks --------------------------------------------------------------------------------------


def everything_said_by(err: BaseException) -> str:
    """str, repr, args and the formatted traceback of an error and its whole cause/context chain."""
    parts = ["".join(traceback.format_exception(err))]
    current: BaseException | None = err
    while current is not None:
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_shows_in_no_representation(provider: str, mmembed_emulator: Emulator) -> None:
    embeddings = make(provider, mmembed_emulator, api_key=CANARY)
    shown = {
        "repr": repr(embeddings),
        "str": str(embeddings),
        "model_dump": repr(embeddings.model_dump()),
        "model_dump_json": embeddings.model_dump_json(),
        "api_key field": repr(embeddings.api_key),
        "embedder": repr(embeddings.embedder),
        "pickle": repr(pickle.dumps(embeddings)),
    }
    assert {name: CANARY in text for name, text in shown.items()} == dict.fromkeys(shown, False)
    assert "api_key" not in embeddings.model_dump()
    # ...yet the key is what authenticates the requests.
    embeddings.embed_query("hello")
    (sent,) = mmembed_emulator.requests
    assert sent_with_key(sent)


def test_errors_never_carry_the_key(mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException] = []
    for bad in ({"project_id": None}, {"dimensions": "many"}, {"no_such_option": 1}):
        with pytest.raises((ConfigurationError, ValueError)) as info:
            make("vertex", mmembed_emulator, **bad)
        errors.append(info.value)
    assert isinstance(errors[0], ConfigurationError)  # itself, not wrapped in pydantic's ValidationError

    def failing_embedder(*args: Any, **kwargs: Any) -> None:
        raise ValueError("some other trouble")

    # Any other ValueError while building becomes pydantic's ValidationError, which must not quote the input.
    monkeypatch.setattr(mmembed.langchain, "Embedder", failing_embedder)
    with pytest.raises(ValidationError, match="some other trouble") as wrapped:
        JinaMultimodalEmbeddings(api_key=CANARY)
    errors.append(wrapped.value)
    assert all(CANARY not in repr(error) for error in wrapped.value.errors())
    monkeypatch.undo()
    refused = Emulator(api_keys=["the-right-key"])
    with refused, pytest.raises(Exception) as info:
        JinaMultimodalEmbeddings(api_key=CANARY, base_url=refused.url, max_retries=0).embed_query("hello")
    errors.append(info.value)
    for err in errors:
        assert CANARY not in everything_said_by(err), type(err).__name__


def test_pickled_embeddings_read_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, mmembed_emulator: Emulator
) -> None:
    monkeypatch.setenv("MY_JINA_KEY", "env-key-2")
    original = JinaMultimodalEmbeddings(base_url=mmembed_emulator.url, api_key_env_var="MY_JINA_KEY", dimensions=64)
    rebuilt = pickle.loads(pickle.dumps(original))
    _made.extend([original, rebuilt])

    assert type(rebuilt) is JinaMultimodalEmbeddings and rebuilt.dimensions == 64
    np.testing.assert_allclose(rebuilt.embed_query("a"), original.embed_query("a"), atol=1e-6)
    assert [r.headers["authorization"] for r in mmembed_emulator.requests] == ["Bearer env-key-2"] * 2


def test_deep_copies_keep_the_key_and_get_their_own_client(mmembed_emulator: Emulator) -> None:
    original = make("jina", mmembed_emulator, dimensions=64)
    for twin in (copy.deepcopy(original), original.model_copy(deep=True)):
        _made.append(twin)
        assert twin.embedder is not original.embedder and twin.dimensions == 64
        assert len(twin.embed_query("a")) == 64
    assert copy.copy(original).embedder is original.embedder
    assert [r.headers["authorization"] for r in mmembed_emulator.requests] == [f"Bearer {CANARY}"] * 2


def test_a_missing_key_names_the_variable_and_the_argument(mmembed_emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError, match=r"JINA_API_KEY.*api_key="):
        JinaMultimodalEmbeddings(base_url=mmembed_emulator.url)


# -- the contract: derived from the registry ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_one_class_per_registered_provider_with_every_option(name: str) -> None:
    provider = REGISTRY[name]
    cls = embeddings_class(name)

    assert cls.__name__ == f"{provider.title}MultimodalEmbeddings"
    assert getattr(mmembed.langchain, cls.__name__) is cls and cls.__name__ in mmembed.langchain.__all__
    assert issubclass(cls, Embeddings) and cls.provider == name
    assert cls.__doc__ and provider.env_var in cls.__doc__
    specs = options_for(provider)
    assert list(cls.model_fields) == [spec.name for spec in specs]
    assert all(cls.model_fields[spec.name].description == spec.doc for spec in specs)
    assert cls.model_fields["api_key"].exclude and not cls.model_fields["api_key"].repr
    for method in ("embed_documents", "embed_query", "embed_image", "aembed_documents", "aembed_query"):
        assert getattr(cls, method) is not getattr(Embeddings, method, None), method
    assert asyncio.iscoroutinefunction(cls.aembed_image)


def test_the_named_classes_are_the_registrys() -> None:
    assert {name: embeddings_class(name) for name in CLASSES} == CLASSES == {
        name: mmembed.langchain.CLASSES[name] for name in CLASSES
    }
    assert embeddings_class("JINA") is JinaMultimodalEmbeddings
    with pytest.raises(ConfigurationError, match="unknown provider"):
        embeddings_class("nope")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_models_in_use_are_shown(provider: str, mmembed_emulator: Emulator) -> None:
    embeddings = make(provider, mmembed_emulator)
    assert embeddings.embedder.provider.model_names() == {
        role: getattr(embeddings, role) for role in embeddings.embedder.provider.model_names()
    }
    assert embeddings.api_key_env_var == embeddings.embedder.provider.api_key_env_var
    assert len(embeddings.embed_query("x")) == DEFAULT_DIMS[provider]


def test_module_docstring_example_runs() -> None:
    assert doctest.testmod(mmembed.langchain).failed == 0


# -- packaging: an optional extra, imported lazily ------------------------------------------------------------

BLOCK_LANGCHAIN = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "langchain_core" or name.startswith("langchain_core."):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_import_mmembed_never_imports_langchain() -> None:
    code = "import sys, mmembed, mmembed.testing; print(sorted(m for m in sys.modules if 'langchain' in m))"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_langchain_core_says_which_extra_to_install() -> None:
    result = run_python(BLOCK_LANGCHAIN + "import mmembed\nimport mmembed.langchain\n")
    assert result.returncode == 1
    assert "pip install 'mmembed[langchain]'" in result.stderr


def test_example_runs_offline_on_the_emulator() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("GOOGLE_")}
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "langchain_mixed.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "emulator" in result.stdout.lower()
    assert "'something yellow' (images only) -> photo yellow" in result.stdout
    assert "photo of something red -> photo red" in result.stdout


