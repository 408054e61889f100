"""The contenders: each one is set up untimed and returns a ``run()`` that does the measured work.

Competitors hard-code the real hosts; each is pointed at the emulator by the least invasive means it allows:

* official ``nomic`` client: the ``ATLAS_API_PATH`` environment variable (read by ``nomic.dataset.AtlasClass``)
  and ``nomic.login(key)``, whose credentials file goes to a temporary ``HOME``;
* llama-index's ``NomicEmbedding``: the same (it calls the ``nomic`` client). Its module imports ``torch`` and
  the HuggingFace integration at the top for a *local* class the remote path never touches; they are
  replaced by empty stand-ins (see :func:`_stub_local_inference`) instead of installing ~3 GB of CUDA wheels;
* chromadb's ``JinaEmbeddingFunction``: no ``base_url`` argument, so its ``_api_url`` attribute is set;
* llama-index's ``JinaEmbedding``: its ``base_url`` is not passed through by the constructor, so the
  ``api_url`` attribute of its API caller is set.
"""

from __future__ import annotations

import importlib.machinery
import sys
import time
import types
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

Spec = dict[str, Any]
Shape = tuple[int, int]  # (vectors returned, dimensions)
# The timed work; it returns the shape, or a check to run after the clock stops (e.g. reading Chroma back).
Run = Callable[[], "Shape | Callable[[], Shape]"]

NOMIC_KEY = "nk-benchmark-key"
JINA_KEY = "jina_benchmark_key"


def _shape(vectors: Any) -> Shape:
    vectors = list(vectors)
    return len(vectors), (len(vectors[0]) if vectors else 0)


# -- Nomic: 200 texts + 40 photos ------------------------------------------------------------------------
def mmembed_nomic(spec: Spec) -> Run:
    from mmembed import Embedder

    embedder = Embedder("nomic", base_url=spec["url"], api_key=NOMIC_KEY, **spec.get("options", {}))
    texts, photos = spec["texts"], [Path(p) for p in spec["photos"]]
    items: list[object] = [*photos, *texts] if spec.get("photos_first") else [*texts, *photos]

    def run() -> Shape:
        vectors = embedder.embed(items)
        stats = embedder.provider.transport.stats
        spec["extra"] = {"client_requests": stats.requests, "client_max_in_flight": stats.max_in_flight}
        return vectors.shape[0], vectors.shape[1]

    return run


def nomic_client(spec: Spec) -> Run:
    import nomic
    from nomic import embed

    nomic.login(NOMIC_KEY)  # writes $HOME/.nomic/credentials; HOME is a temporary directory here
    texts, photos = spec["texts"], [str(p) for p in spec["photos"]]

    def run() -> Shape:
        out = embed.text(texts, model="nomic-embed-text-v1.5")["embeddings"]
        if photos:
            out += embed.image(photos, model="nomic-embed-vision-v1.5")["embeddings"]
        return _shape(out)

    return run


def llama_index_nomic(spec: Spec) -> Run:
    _stub_local_inference()
    from llama_index.embeddings.nomic import NomicEmbedding

    model = NomicEmbedding(
        api_key=NOMIC_KEY, model_name="nomic-embed-text-v1.5", vision_model_name="nomic-embed-vision-v1.5"
    )
    texts, photos = spec["texts"], [str(p) for p in spec["photos"]]

    def run() -> Shape:
        out = model.get_text_embedding_batch(texts)
        out += model.get_image_embedding_batch(photos)
        return _shape(out)

    return run


def _stub_local_inference() -> None:
    """Empty stand-ins for ``torch`` and llama-index's HuggingFace integration (local inference only)."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    def module(name: str, **attrs: Any) -> None:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        sys.modules.setdefault(name, mod)

    class Pooling(str, Enum):
        CLS = "cls"
        MEAN = "mean"

    module("torch")
    module("llama_index.embeddings.huggingface", HuggingFaceEmbedding=BaseEmbedding)
    module("llama_index.embeddings.huggingface.pooling", Pooling=Pooling)


# -- Jina through Chroma: 100 texts + 12 big photos ---------------------------------------------------------
def _collection(spec: Spec, ef: Any, loader: Any) -> Any:
    import chromadb

    client = chromadb.PersistentClient(path=spec["chroma_dir"])
    return client.create_collection(spec["collection"], embedding_function=ef, data_loader=loader)


def _chroma_run(collection: Any, spec: Spec) -> Run:
    photos, texts = [str(p) for p in spec["photos"]], spec["texts"]

    def run() -> Callable[[], Shape]:
        collection.add(ids=[f"img{i}" for i in range(len(photos))], uris=photos)
        collection.add(ids=[f"txt{i}" for i in range(len(texts))], documents=texts)
        return lambda: (collection.count(), len(collection.get(include=["embeddings"], limit=1)["embeddings"][0]))

    return run


def mmembed_chroma_jina(spec: Spec) -> Run:
    from mmembed.chroma import ImageURILoader, JinaMultimodalEmbeddingFunction

    ef = JinaMultimodalEmbeddingFunction(api_key=JINA_KEY, base_url=spec["url"], cache=spec.get("cache"))
    _time_embedding(ef.embedder, spec)
    return _chroma_run(_collection(spec, ef, ImageURILoader()), spec)


def mmembed_embed_jina(spec: Spec) -> Run:
    """The same 100 texts + 12 photos through ``Embedder.embed`` (one mixed call, no Chroma), with ``cache=``."""
    from mmembed import Embedder, ImageSource

    embedder = Embedder("jina", base_url=spec["url"], api_key=JINA_KEY, cache=spec["cache"])
    items: list[object] = [*(ImageSource(p) for p in spec["photos"]), *spec["texts"]]

    def run() -> Shape:
        vectors = embedder.embed(items)
        return vectors.shape[0], vectors.shape[1]

    return run


def _time_embedding(embedder: Any, spec: Spec) -> None:
    """Add the seconds spent inside ``embedder.embed`` to ``spec["extra"]["embed_s"]`` (Chroma's own work excluded)."""
    embed = embedder.embed
    extra = spec.setdefault("extra", {"embed_s": 0.0})

    def timed(items: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return embed(items, **kwargs)
        finally:
            extra["embed_s"] += time.perf_counter() - started

    embedder.embed = timed


def chroma_only(spec: Spec) -> Run:
    """Chroma's own share: the same two add() calls with ready-made vectors (no embedding at all)."""
    import numpy as np

    collection = _collection(spec, None, None)
    photos, texts = [str(p) for p in spec["photos"]], spec["texts"]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(photos) + len(texts), 1024)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def run() -> Callable[[], Shape]:
        collection.add(ids=[f"img{i}" for i in range(len(photos))], uris=photos, embeddings=vectors[: len(photos)])
        collection.add(ids=[f"txt{i}" for i in range(len(texts))], documents=texts, embeddings=vectors[len(photos) :])
        return lambda: (collection.count(), vectors.shape[1])

    return run


def chromadb_jina(spec: Spec) -> Run:
    from chromadb.utils.data_loaders import ImageLoader
    from chromadb.utils.embedding_functions import JinaEmbeddingFunction

    ef = JinaEmbeddingFunction(model_name="jina-clip-v2")  # key from JINA_API_KEY
    ef._api_url = spec["url"] + "/v1/embeddings"
    return _chroma_run(_collection(spec, ef, ImageLoader()), spec)


def llama_index_jina(spec: Spec) -> Run:
    from llama_index.embeddings.jinaai import JinaEmbedding

    model = JinaEmbedding(model="jina-clip-v2", api_key=JINA_KEY)
    model._api.api_url = spec["url"] + "/v1/embeddings"
    texts, photos = spec["texts"], [str(p) for p in spec["photos"]]

    def run() -> Shape:
        out = model.get_image_embedding_batch(photos)
        out += model.get_text_embedding_batch(texts)
        return _shape(out)

    return run


# -- Streaming: 10,000 photo paths from a generator ----------------------------------------------------------
def mmembed_stream(spec: Spec) -> Run:
    from mmembed import Embedder

    embedder = Embedder(spec["provider"], base_url=spec["url"], api_key=NOMIC_KEY)
    paths = spec["photos"]

    def run() -> Shape:
        vectors = embedder.embed(Path(p) for p in paths)  # a generator: nothing is listed up front
        return vectors.shape[0], vectors.shape[1]

    return run


CONTENDERS: dict[str, Callable[[Spec], Run]] = {
    "mmembed_nomic": mmembed_nomic,
    "nomic_client": nomic_client,
    "llama_index_nomic": llama_index_nomic,
    "mmembed_chroma_jina": mmembed_chroma_jina,
    "mmembed_embed_jina": mmembed_embed_jina,
    "chromadb_jina": chromadb_jina,
    "chroma_only": chroma_only,
    "llama_index_jina": llama_index_jina,
    "mmembed_stream": mmembed_stream,
}


# -- Issue 15: the CLI against the library, bursts of queries, query_mixed --------------------------------------
def _ingest_items(spec: Spec) -> list[tuple[str, object, str]]:
    """(id, item, modality) for the notes and photos of the ingest workload, in the CLI's walk order."""
    notes = sorted(Path(spec["folder"], "notes").glob("*.txt"))
    photos = sorted(Path(spec["folder"], "photos").glob("*.jpg"))
    out: list[tuple[str, object, str]] = [(f"n{i}", p.read_text().strip(), "text") for i, p in enumerate(notes)]
    return out + [(f"p{i}", p, "image") for i, p in enumerate(photos)]


def library_ingest(spec: Spec) -> Run:
    """`Embedder.embed` of the notes and photos, then Chroma's own `add()` of those vectors."""
    import chromadb

    from mmembed import Embedder

    embedder = Embedder("jina", base_url=spec["url"], api_key=JINA_KEY)
    items = _ingest_items(spec)
    collection = chromadb.PersistentClient(path=spec["chroma_dir"]).create_collection("library")

    def run() -> Callable[[], Shape]:
        vectors = embedder.embed([item for _, item, _ in items])
        texts = [(i, it) for i, (_, it, m) in enumerate(items) if m == "text"]
        images = [(i, it) for i, (_, it, m) in enumerate(items) if m == "image"]
        collection.add(ids=[items[i][0] for i, _ in texts], embeddings=vectors[[i for i, _ in texts]],
                       documents=[str(t) for _, t in texts], metadatas=[{"modality": "text"} for _ in texts])
        collection.add(ids=[items[i][0] for i, _ in images], embeddings=vectors[[i for i, _ in images]],
                       uris=[str(p) for _, p in images], metadatas=[{"modality": "image"} for _ in images])
        return lambda: (collection.count(), vectors.shape[1])

    return run


def cli_ingest(spec: Spec) -> Run:
    """`mmembed ingest FOLDER --provider jina` (in this process: the interpreter's start-up is not counted)."""
    import os

    import chromadb

    import mmembed.chroma  # noqa: F401  (imported up front, as the library contender imports its modules)
    from mmembed.cli import main

    os.environ["JINA_API_KEY"] = JINA_KEY
    argv = ["ingest", spec["folder"], "--provider", "jina", "--collection", "cli", "--db", spec["chroma_dir"],
            "--base-url", spec["url"], "-q"]

    def run() -> Callable[[], Shape]:
        status = main(argv)
        if status != 0:
            raise RuntimeError(f"mmembed ingest exited with {status}")

        def check() -> Shape:
            client = chromadb.PersistentClient(path=spec["chroma_dir"])
            collection = client.get_collection("cli")
            return collection.count(), len(collection.get(include=["embeddings"], limit=1)["embeddings"][0])

        return check

    return run


_raw_sessions: dict[str, Any] = {}


def _raw_round_trip(url: str, body: dict[str, Any], count: int) -> list[float]:
    """Seconds per plain ``requests`` POST of ``body`` on one kept-alive session: the floor for any client."""
    import requests

    session = _raw_sessions.setdefault(url, requests.Session())
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.post(f"{url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {JINA_KEY}"})
        response.json()
        times.append(time.perf_counter() - started)
    return times


def query_burst(spec: Spec) -> Run:
    """Three rounds of: an idle second, 5 raw POSTs; an idle second, 5 `embed_query` calls. Then 40 back to back."""
    from mmembed import Embedder

    embedder = Embedder("jina", base_url=spec["url"], api_key=JINA_KEY)  # Jina's defaults: 500/min, 5 at a time
    body = {"model": "jina-clip-v2", "input": [{"text": "raw"}], "task": "retrieval.query"}
    _raw_round_trip(spec["url"], body, 1)
    embedder.embed_query(["a warm-up query"])  # a warm client: connection open, modules loaded
    extra = spec.setdefault("extra", {})

    def run() -> Shape:
        rounds = []
        for r in range(spec.get("rounds", 3)):
            time.sleep(1.0)  # idle
            raw = _raw_round_trip(spec["url"], body, 5)
            time.sleep(1.0)  # idle again
            ours = []
            for i in range(5):
                started = time.perf_counter()
                embedder.embed_query([f"burst {r} query {i}"])
                ours.append(time.perf_counter() - started)
            rounds.append({"raw_s": raw, "burst_s": ours})
        sustained = spec.get("sustained", 40)
        for i in range(sustained):
            embedder.embed_query([f"sustained query {i}"])
        extra.update(rounds=rounds, sustained=sustained, client_429=embedder.provider.transport.stats.rate_limited)
        return 5 * len(rounds) + sustained, int(embedder.dimensions or 0)

    return run


def query_overhead(spec: Spec) -> Run:
    """A warm `embed_query` against the raw round trip; `query_mixed` against the Chroma queries it makes."""
    import statistics

    import chromadb
    import numpy as np

    from mmembed.chroma import JinaMultimodalEmbeddingFunction, query_mixed

    ef = JinaMultimodalEmbeddingFunction(api_key=JINA_KEY, base_url=spec["url"], requests_per_minute=1e9)
    embedder = ef.embedder
    body = {"model": "jina-clip-v2", "input": [{"text": "q"}], "task": "retrieval.query"}
    client = chromadb.PersistentClient(path=spec["chroma_dir"])
    collection = client.create_collection("mixed", embedding_function=ef)
    rng = np.random.default_rng(0)
    n = spec.get("records", 2000)
    vectors = rng.normal(size=(n, 1024)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for start in range(0, n, 1000):
        stop = min(n, start + 1000)
        collection.add(ids=[f"r{i}" for i in range(start, stop)], embeddings=vectors[start:stop],
                       metadatas=[{"modality": "text" if i % 3 else "image"} for i in range(start, stop)])
    for _ in range(20):  # warm everything: connection, Chroma's index, both code paths
        _raw_round_trip(spec["url"], body, 1)
        embedder.embed_query(["warm"])
        query_mixed(collection, query_texts=["warm"], n_results=10)
        query_mixed(collection, query_texts=["warm"], n_results=10, fusion="rrf")
    extra = spec.setdefault("extra", {})
    rounds = spec.get("rounds", 60)

    def run() -> Shape:
        raw, ours, mixed, mixed_rrf, chroma_only, embed_only = [], [], [], [], [], []
        for i in range(rounds):  # interleaved, so the machine's load hits every series alike
            raw += _raw_round_trip(spec["url"], {**body, "input": [{"text": f"raw {i}"}]}, 1)
            started = time.perf_counter()
            vector = embedder.embed_query([f"query {i}"])
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            query_mixed(collection, query_texts=[f"mixed {i}"], n_results=10)  # calibrated fusion
            mixed.append(time.perf_counter() - started)
            started = time.perf_counter()
            query_mixed(collection, query_texts=[f"mixed {i}"], n_results=10, fusion="rrf")
            mixed_rrf.append(time.perf_counter() - started)
            started = time.perf_counter()
            embedder.embed_query([f"mixed-embed {i}"])
            embed_only.append(time.perf_counter() - started)
            started = time.perf_counter()
            for modality in ("text", "image"):
                collection.query(query_embeddings=vector, n_results=10, where={"modality": modality},
                                 include=["metadatas", "documents", "distances", "uris"])
            chroma_only.append(time.perf_counter() - started)
        med = statistics.median
        extra.update(raw_s=med(raw), embed_query_s=med(ours), query_mixed_s=med(mixed),
                     query_mixed_rrf_s=med(mixed_rrf), chroma_queries_s=med(chroma_only),
                     embed_in_mixed_s=med(embed_only))
        return rounds, 1024

    return run


CONTENDERS.update(library_ingest=library_ingest, cli_ingest=cli_ingest, query_burst=query_burst,
                  query_overhead=query_overhead)
