"""Chroma adapters: multimodal embedding functions, a lazy image loader, and mixed-modality add and query.

Importing this module registers one embedding function per provider in the registry
(:data:`mmembed.providers.PROVIDERS`), derived from the provider's declaration, so a collection reopened with
``client.get_collection(name)`` rebuilds its function from the stored config: ``{Title}MultimodalEmbeddingFunction``
(one per registered provider, plugins included), registered as ``mmembed_{name}``, with the provider's model
options (``model``, or the model roles a provider declares instead, such as a text and a vision model) and
persisted extras (a cloud provider's project and location, prompt templates) in its config.
:func:`function_class` looks one up by provider name; the classes are made at import, so a static type checker
sees them only through it.

Every config also holds ``dimensions`` (resolved: the real vector size), ``image_side``, ``base_url`` and
``api_key_env_var`` — what decides the vectors and where to get them. Never a key: an ``api_key=`` passed
explicitly lives in memory only, and a reopened collection reads the key from the environment variable named
in its config. Local settings (``cache``, ``allow_private_urls``, ``credentials``, timeouts, retries,
concurrency, rate) are not persisted either; to use them on a reopened collection, pass the function again:
``get_collection(name, embedding_function=function_class(provider)(cache="vectors.db"))``.

:class:`ImageURILoader` turns ``uris=`` into lazy :class:`~mmembed.ImageSource` references: local files are
read and shrunk to the model's input size by the core, http(s) URLs go as URLs to the APIs that fetch them and
are downloaded for the others, ``gs://`` URIs go as such to the APIs that read Cloud Storage. Nothing is decoded
at full size.

:func:`add_mixed` and :func:`query_mixed` keep texts and images in one collection usable: cross-modal
similarities are far smaller than same-modality ones, so a plain query ranks every text above every image;
``query_mixed`` ranks each modality on its own and merges the hits by calibrated relevance
(:mod:`mmembed.fusion`), or by reciprocal rank fusion (k=60) with ``fusion="rrf"``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import pathlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, cast

import numpy as np
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Embeddable, EmbeddingFunction, Embeddings, QueryResult, Space
from chromadb.utils.embedding_functions import register_embedding_function

from . import _trust
from . import fusion as _fusion
from ._late_chroma import (  # late interaction (multi-vectors): in their own module, public here
    LATE_KEY,
    OVER_FETCH,
    LateQueryResult,
    add_late,
    create_late_collection,
    delete_late_collection,
    late_settings,
    query_late,
)
from .embedder import Embedder, provider_class
from .errors import ConfigurationError, InputError
from .fallbacks import Segment
from .inputs import ImageItem, ImageSource, Item, MediaItem, MediaSource, PageImage, TextItem, to_item
from .providers import PROVIDERS, Provider

__all__ = [
    "FUNCTIONS",
    "LATE_KEY",
    "MODALITIES",
    "MODALITIES_KEY",
    "MODALITY_KEY",
    "OVER_FETCH",
    "RRF_K",
    "Fusion",
    "ImageURILoader",
    "LateQueryResult",
    "MediaURILoader",
    "MixedQueryResult",
    "MultimodalEmbeddingFunction",
    "add_late",
    "add_mixed",
    "create_late_collection",
    "delete_late_collection",
    "embedding_function_of",
    "function_class",
    "late_settings",
    "query_late",
    "query_mixed",
    "record_modalities",
    "stored_modalities",
]  # plus one {Title}MultimodalEmbeddingFunction per registered provider, added below

MODALITY_KEY = "modality"
RRF_K = 60
Modality = Literal["text", "image", "pdf", "video", "audio", "interleaved"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "pdf", "video", "audio", "interleaved")
# The collection metadata key where add_mixed records the modalities a collection holds, so query_mixed runs
# one query per modality present (a text+image collection still costs 2 queries, not 6).
MODALITIES_KEY = "mmembed:modalities"
Fusion = Literal["calibrated", "rrf"]
# Records per modality whose vectors calibrate query_mixed's scores (a seeded sample, kept per collection size).
BACKGROUND_SAMPLE = 256

# Config keys every function stores, besides its provider's model keys; all but the env var may be None.
COMMON_KEYS = ("dimensions", "image_side", "base_url", "api_key_env_var")
# Changing these would put new vectors in a space built from the old ones.
FROZEN_KEYS = ("dimensions",)


class MultimodalEmbeddingFunction(EmbeddingFunction[Embeddable]):
    """Base of the mmembed Chroma embedding functions; a subclass declares its provider and model options.

    Takes the options of :class:`mmembed.Embedder`. ``__call__`` embeds documents (str) and images (Chroma's
    arrays, :class:`ImageURILoader` references, paths, bytes, PIL images) with the document task;
    :meth:`embed_query` uses the query task. Vectors are unit length, so every space ranks alike; cosine is
    the default.
    """

    provider: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        if not hasattr(self, "provider"):
            raise TypeError("use a provider's function, e.g. JinaMultimodalEmbeddingFunction, or function_class(name)")
        embedder = Embedder(self.provider, **options)
        provider = embedder.provider
        config = provider.persisted_settings()
        config.update(
            dimensions=embedder.dimensions,  # resolved, so the config shows (and freezes) the real vector size
            image_side=options.get("image_side"),
            base_url=options.get("base_url"),
            api_key_env_var=provider.api_key_env_var,
        )
        _trust.remember(self.provider, config)  # the user's own: Chroma may rebuild it from this config
        self._setup(config, embedder)

    @classmethod
    def model_keys(cls) -> tuple[str, ...]:
        """Persisted options that name models (frozen once a collection exists): the provider's declaration."""
        return PROVIDERS[cls.provider].model_keys

    @classmethod
    def extra_keys(cls) -> tuple[str, ...]:
        """Other persisted provider options."""
        return PROVIDERS[cls.provider].extra_keys

    def _setup(self, config: dict[str, Any], embedder: Embedder | None) -> None:
        self._config = config
        self._embedder = embedder
        self._owns_embedder = embedder is not None
        self._lock = threading.Lock()

    # -- Chroma's contract --------------------------------------------------------------------------
    @classmethod
    def name(cls) -> str:
        return f"mmembed_{cls.provider}"

    def __call__(self, input: Embeddable) -> Embeddings:
        return list(self.embedder.embed(input))

    def embed_query(self, input: Embeddable) -> Embeddings:
        return list(self.embedder.embed_query(input))

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]  # unit vectors: all three rank alike

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    @classmethod
    def build_from_config(cls, config: dict[str, Any]) -> MultimodalEmbeddingFunction:
        """The function a stored config describes; its client is made on first use, with the key from the env.

        Chroma rebuilds the function of a reopened collection on every embedding call, so rebuilt functions
        with one config share one :class:`~mmembed.Embedder` (one connection pool, one rate limiter).

        A stored config is not the user's: on first use, before any connection, a rebuilt function refuses a
        host its provider does not declare and ``MMEMBED_TRUSTED_HOSTS`` does not list, and a key variable that
        is neither the provider's nor in ``MMEMBED_TRUSTED_KEY_VARS`` (:class:`~mmembed.ConfigurationError`;
        see :mod:`mmembed._trust`). Chroma calls this method whenever it reads a collection's configuration or
        schema (listing, upserting ready-made vectors, ``modify``), so building never refuses: only embedding
        does, and a collection opened with ``embedding_function=`` of your own never uses the stored one.
        """
        cls.validate_config(config)
        ef = cls.__new__(cls)
        ef._setup({key: config.get(key) for key in cls.config_keys()}, None)
        return ef

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """Raise :class:`~mmembed.ConfigurationError` unless ``config`` is one this class wrote."""
        if not isinstance(config, Mapping):
            raise ConfigurationError(f"{cls.name()}: config must be a dict, not {type(config).__name__}")
        unknown = sorted(set(config) - set(cls.config_keys()))
        if unknown:
            raise ConfigurationError(f"{cls.name()}: unknown config keys {unknown}; known: {list(cls.config_keys())}")
        for key in (*cls.model_keys(), "api_key_env_var"):
            if not isinstance(config.get(key), str) or not config[key].strip():
                raise ConfigurationError(f"{cls.name()}: config needs {key!r} (a non-empty string)")
        for key in cls.extra_keys():
            if config.get(key) is not None and not isinstance(config[key], str):
                raise ConfigurationError(f"{cls.name()}: config {key!r} must be a string or null")
        for key in ("dimensions", "image_side"):
            value = config.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{cls.name()}: config {key!r} must be a positive integer or null")
        base_url = config.get("base_url")
        if base_url is not None and (not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))):
            raise ConfigurationError(f"{cls.name()}: config 'base_url' must be an http(s) URL or null")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Refuse a new model or size: the stored vectors would no longer share a space with new ones."""
        for key in (*self.model_keys(), *FROZEN_KEYS):
            if key in new_config and new_config[key] != old_config.get(key):
                raise ConfigurationError(
                    f"{self.name()}: {key} cannot change from {old_config.get(key)!r} to {new_config[key]!r} in an "
                    "existing collection (old and new vectors would not compare); create a new collection instead"
                )

    def is_legacy(self) -> bool:
        return False

    # -- ours ---------------------------------------------------------------------------------------
    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        return (*cls.model_keys(), *cls.extra_keys(), *COMMON_KEYS)

    @property
    def embedder(self) -> Embedder:
        """The :class:`~mmembed.Embedder` behind this function (made on first use for rebuilt functions)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = _shared_embedder(self.provider, self._config, self.name())
            return self._embedder

    def close(self) -> None:
        """Close the connections of an embedder this function made (shared ones close at exit)."""
        if self._owns_embedder and self._embedder is not None:
            self._embedder.close()

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._config.items())
        return f"{type(self).__name__}({options})"


def _function_class(provider: type[Provider]) -> type[MultimodalEmbeddingFunction]:
    """The registered Chroma function of one provider, derived from its declaration."""
    name = f"{provider.title}MultimodalEmbeddingFunction"
    summary = (provider.__doc__ or provider.name).strip().splitlines()[0]
    doc = f"{summary} Key: ``{provider.env_var}``. Registered with Chroma as ``mmembed_{provider.name}``."
    namespace = {"provider": provider.name, "__doc__": doc, "__module__": __name__, "__qualname__": name}
    cls = type(name, (MultimodalEmbeddingFunction,), namespace)
    register = cast("Callable[[type], type[MultimodalEmbeddingFunction]]", register_embedding_function)
    return register(cls)


FUNCTIONS: dict[str, type[MultimodalEmbeddingFunction]] = {
    name: _function_class(provider) for name, provider in PROVIDERS.items()
}
globals().update({cls.__name__: cls for cls in FUNCTIONS.values()})
__all__ += sorted(cls.__name__ for cls in FUNCTIONS.values())


def function_class(provider: str) -> type[MultimodalEmbeddingFunction]:
    """The Chroma embedding function class of ``provider`` (any name of ``PROVIDERS``)."""
    return FUNCTIONS[provider_class(provider).name]


_shared: dict[tuple[str, str, str], Embedder] = {}
_shared_lock = threading.Lock()


def _shared_embedder(provider: str, config: Mapping[str, Any], what: str) -> Embedder:
    """One Embedder per (config, current key): Chroma rebuilds a reopened collection's function per call.

    A config from the store (not one a function made in code here wrote) is checked first (the key variable,
    the base URL), and so is the host the provider derives from it (a stored cloud ``location`` names a host
    too), before any request.
    """
    declared = PROVIDERS[provider]
    stored = not _trust.written_here(provider, config)
    if stored:
        _trust.check_stored_config(declared, config, what)
    key_value = os.environ.get(str(config["api_key_env_var"]), "")
    fingerprint = hashlib.sha256(key_value.encode()).hexdigest()  # a rotated key gets a new client
    key = (provider, json.dumps(dict(config), sort_keys=True), fingerprint)
    with _shared_lock:
        embedder = _shared.get(key)
        if embedder is None:
            embedder = Embedder(provider, **config)
            try:
                if stored:
                    _trust.check_host(declared, embedder.provider.base_url, what)
            except ConfigurationError:
                embedder.close()
                raise
            _shared[key] = embedder
        return embedder


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        for embedder in _shared.values():
            embedder.close()
        _shared.clear()


# -- data loader ------------------------------------------------------------------------------------
_SCHEMES = frozenset({"http", "https", "gs", "file", "data"})


class ImageURILoader:
    """A Chroma data loader for ``uris=``: local paths, http(s) URLs and ``gs://`` URIs, never decoded here.

    It returns one :class:`~mmembed.ImageSource` per URI (None for None); an mmembed embedding function then
    uploads a local file shrunk to the model's input size, lets the APIs that fetch http(s) URLs do so, downloads
    them for the others, and passes ``gs://`` to the APIs that read it. Chroma hands a loader's output straight to the
    embedding function without checking it (chromadb 1.5 validates a loader's output nowhere), so no image is
    ever decoded at full resolution. ``include=["data"]`` also yields these references, not arrays. Chroma's
    ``DataLoader`` protocol is typed for arrays, so a strict type checker flags ``data_loader=ImageURILoader()``;
    the return type here says what really comes back.
    """

    def __call__(self, uris: Sequence[str | None]) -> list[ImageSource | None]:
        return [None if uri is None else _source(uri, i) for i, uri in enumerate(uris)]

    def __repr__(self) -> str:
        return "ImageURILoader()"


def _source(uri: str, index: int) -> ImageSource:
    scheme, sep, _ = str(uri).partition("://")
    if sep and scheme.lower() not in _SCHEMES:
        raise InputError(f"unsupported URI scheme {scheme}://; use a path, http(s):// or gs://", index=index)
    return ImageSource(uri)


class MediaURILoader:
    """A Chroma data loader for ``uris=`` of any kind: images, PDFs, video and audio; nothing is decoded here.

    A local path (or ``file://``) becomes a :class:`pathlib.Path`, whose kind the core recognises from the
    file's first bytes; an http(s) or ``gs://`` URI becomes a :class:`~mmembed.MediaSource` when its name says
    PDF, video or audio (``.pdf``, ``.mp4``, ``.mov``, ``.webm``, ``.mp3``, ``.wav``, ...) and an
    :class:`~mmembed.ImageSource` otherwise. As with :class:`ImageURILoader`, the return type is honest, not
    Chroma's array type.
    """

    def __call__(self, uris: Sequence[str | None]) -> list[object | None]:
        return [None if uri is None else _media_source(uri, i) for i, uri in enumerate(uris)]

    def __repr__(self) -> str:
        return "MediaURILoader()"


def _media_source(uri: str, index: int) -> object:
    from .inputs import from_uri

    return from_uri(_source(uri, index).uri)


# -- mixed collections ------------------------------------------------------------------------------
class MixedQueryResult(QueryResult, total=False):
    """A Chroma query result plus ``scores`` (higher is better) and, with ``fusion="rrf"``, ``rrf_scores``.

    ``scores`` are calibrated relevances by default (see :mod:`mmembed.fusion`): -log10 of the number of
    unrelated records of the hit's modality expected to be this similar to the query by chance (above 2: stands
    out; 0 or below: no more similar than chance), comparable across modalities and queries. With RRF they are
    the reciprocal-rank scores, also in ``rrf_scores``.
    """

    scores: list[list[float]]
    rrf_scores: list[list[float]]


def add_mixed(
    collection: Collection,
    ids: Sequence[str],
    items: Sequence[object],
    metadatas: Sequence[Mapping[str, Any] | None] | None = None,
) -> None:
    """Add texts, images, PDFs, video, audio and interleaved items in one call, recording each one's modality.

    ``items`` may mix anything :meth:`mmembed.Embedder.embed` takes, and :class:`~mmembed.Segment` objects from
    :meth:`~mmembed.Embedder.expand` (their modality and metadata — page, passage, start/end seconds — are
    stored with them). All are embedded in one pass by the collection's mmembed embedding function and added
    with ``embeddings=``. Texts become the records' documents; paths and URL/gs:// sources become their
    ``uris`` (a PDF page's uri is the PDF). Each metadata gets ``"modality"`` (``text``, ``image``, ``pdf``,
    ``video``, ``audio`` or ``interleaved``; user keys are kept, a conflicting ``modality`` is an error), and
    the collection's metadata records which modalities it holds, so :func:`query_mixed` queries only those.
    """
    ids, items = list(ids), list(items)
    metas = list(metadatas) if metadatas is not None else [None] * len(items)
    if not len(ids) == len(items) == len(metas):
        raise ValueError(f"ids, items and metadatas differ in length ({len(ids)}, {len(items)}, {len(metas)})")
    if not items:
        raise ValueError("add_mixed needs at least one item")
    converted: list[Item] = []
    modalities: list[Modality] = []
    merged_metas: list[dict[str, Any]] = []
    for i, (item, meta) in enumerate(zip(items, metas, strict=True)):
        segment = item if isinstance(item, Segment) else None
        try:
            internal = to_item(segment.item if segment is not None else item)
        except InputError as err:
            raise err.at(i) from err.__cause__
        converted.append(internal)
        modalities.append(cast(Modality, segment.modality if segment is not None else internal.kind))
        merged_metas.append({**(segment.metadata if segment is not None else {}), **(meta or {})})
    vectors = embedding_function_of(collection)(cast(Embeddable, converted))
    documents = [item.text if isinstance(item, TextItem) else None for item in converted]
    originals = [item.item if isinstance(item, Segment) else item for item in items]
    uris = [_uri_of(original, item) for original, item in zip(originals, converted, strict=True)]
    record_modalities(collection, set(modalities))
    # Chroma's hints say list[str], but with embeddings= it stores None documents and uris as "absent".
    collection.add(
        ids=ids,
        embeddings=vectors,
        documents=cast("list[str]", documents) if any(d is not None for d in documents) else None,
        uris=cast("list[str]", uris) if any(u is not None for u in uris) else None,
        metadatas=[
            _with_modality(m, modality, i)
            for i, (m, modality) in enumerate(zip(merged_metas, modalities, strict=True))
        ],
    )


def stored_modalities(collection: Collection) -> tuple[Modality, ...]:
    """The modalities :func:`add_mixed` recorded for ``collection`` (text and image when none are recorded)."""
    recorded = str((collection.metadata or {}).get(MODALITIES_KEY) or "")
    found = tuple(m for m in MODALITIES if m in recorded.split(","))
    return found or ("text", "image")


def record_modalities(collection: Collection, modalities: set[Modality] | set[str]) -> None:
    """Record in ``collection``'s metadata that it holds ``modalities`` (what :func:`query_mixed` queries)."""
    recorded = set(stored_modalities(collection)) if (collection.metadata or {}).get(MODALITIES_KEY) else set()
    if modalities <= recorded:
        return
    metadata = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    metadata[MODALITIES_KEY] = ",".join(m for m in MODALITIES if m in recorded | modalities)
    collection.modify(metadata=metadata)


def query_mixed(
    collection: Collection,
    query_texts: Sequence[str] | None = None,
    query_images: Sequence[object] | None = None,
    n_results: int = 10,
    where: Mapping[str, Any] | None = None,
    *,
    embedder: Embedder | None = None,
    modalities: Sequence[Modality] | None = None,
    fusion: Fusion = "calibrated",
) -> MixedQueryResult:
    """Query a mixed collection so that hits of every modality compete by relevance; one result list per query.

    Cross-modal similarities are far smaller than same-modality ones (≈0.3 against ≈0.8 on CLIP-style models),
    so one plain query ranks every text above every image. Here each modality is ranked on its own (``where``
    restricted to it, combined with the caller's ``where`` by ``$and``), then the hits are merged:

    * ``fusion="calibrated"`` (default): by calibrated relevance (:mod:`mmembed.fusion`): how far each hit's
      similarity stands out from the similarities of its modality's records to this query (a seeded sample of
      :data:`BACKGROUND_SAMPLE` records per modality, kept while the collection's size is unchanged), as
      -log10 of the number of chance records of that modality expected to be this similar. A relevant photo
      outranks an unrelated note, and a modality with nothing relevant stays below the relevant hits. The
      sample ignores ``where``: a filter narrows the hits, not what counts as chance.
    * ``fusion="rrf"``: reciprocal rank fusion, a hit's score the sum over rankings of ``1 / (RRF_K + rank)``
      with ranks from 1 and ``RRF_K = 60`` (Cormack et al. 2009): the best of each modality, then the second
      of each..., whatever their relevance; equal scores go to the smaller distance.

    Queries are the texts, then the images. ``modalities`` are the rankings to merge: by default those
    :func:`add_mixed` recorded for the collection (text and image when none are recorded), so a collection of
    texts and photos costs two queries. The queries are embedded by the collection's mmembed function, or by
    ``embedder`` when given: a collection that another framework fills with ready-made vectors has no such
    function (LangChain's ``Chroma`` store: ``query_mixed(client.get_collection(name), ...,
    embedder=embeddings.embedder)``).

    Returns Chroma's query shape (``ids``, ``distances`` — each hit's own distance, cosine by default —,
    ``metadatas``, ``documents``, ``uris``) plus ``scores``, highest first (see :class:`MixedQueryResult`), and
    with RRF ``rrf_scores`` (the same numbers).
    """
    queries: list[object] = [*(query_texts or []), *(query_images or [])]
    _check_query(queries, n_results, fusion)
    if embedder is not None:
        vectors: Embeddings = list(embedder.embed_query(queries))
    else:
        vectors = embedding_function_of(collection).embed_query(cast(Embeddable, queries))
    ranked = tuple(modalities or stored_modalities(collection))
    rankings = [_ranking(collection, vectors, modality, where, n_results, fusion) for modality in ranked]
    if fusion == "rrf":
        fused = [_fuse([_hits(ranking, q) for ranking in rankings], n_results) for q in range(len(queries))]
        result = _result(fused)
        result["rrf_scores"] = [list(scores) for scores in result["scores"]]
        return result
    kinds = ["text"] * len(query_texts or []) + ["image"] * len(query_images or [])
    return _result(_calibrated(collection, vectors, kinds, dict(zip(ranked, rankings, strict=True)), n_results))


def _check_query(queries: list[object], n_results: int, fusion: str) -> None:
    if not queries:
        raise ValueError("query_mixed needs query_texts or query_images")
    if isinstance(n_results, bool) or not isinstance(n_results, int) or n_results < 1:
        raise ValueError(f"n_results must be a positive integer, got {n_results!r}")
    if fusion not in ("calibrated", "rrf"):
        raise ValueError(f"fusion must be 'calibrated' or 'rrf', got {fusion!r}")


def _ranking(
    collection: Collection,
    vectors: Embeddings,
    modality: Modality,
    where: Mapping[str, Any] | None,
    n_results: int,
    fusion: str,
) -> QueryResult:
    """One modality's ranking for every query (with the hits' vectors, which calibration scores)."""
    include: list[str] = ["metadatas", "documents", "distances", "uris"]
    return collection.query(
        query_embeddings=vectors,
        n_results=n_results,
        where=_restrict(where, modality),
        include=cast(Any, [*include, "embeddings"] if fusion == "calibrated" else include),
    )


def _result(fused: list[list[tuple[_Hit, float]]]) -> MixedQueryResult:
    return MixedQueryResult(
        ids=[[hit[0] for hit, _ in hits] for hits in fused],
        distances=[[hit[1] for hit, _ in hits] for hits in fused],
        metadatas=[[hit[2] for hit, _ in hits] for hits in fused],
        documents=[[hit[3] for hit, _ in hits] for hits in fused],
        uris=[[hit[4] for hit, _ in hits] for hits in fused],
        embeddings=None,
        data=None,
        included=["metadatas", "documents", "distances", "uris"],
        scores=[[score for _, score in hits] for hits in fused],
    )


def _calibrated(
    collection: Collection,
    vectors: Embeddings,
    kinds: list[str],
    rankings: dict[Modality, QueryResult],
    n_results: int,
) -> list[list[tuple[_Hit, float]]]:
    """Each query's hits merged by calibrated relevance (:mod:`mmembed.fusion`)."""
    samples, populations = _background_sample(collection, tuple(rankings))
    fused = []
    for q, (vector, kind) in enumerate(zip(vectors, kinds, strict=True)):
        calibration = _fusion.calibrate(vector, samples, populations, reference=kind)
        query = np.asarray(vector, dtype=np.float64)
        hits: dict[str, _Hit] = {}
        scored: dict[str, list[tuple[str, float, Any]]] = {}
        for modality, ranking in rankings.items():
            found = _hits(ranking, q)
            if not found or modality not in calibration.fits:
                continue  # no records of this modality (a sample of none calibrates nothing)
            rows = cast("list[Any]", (ranking.get("embeddings") or [])[q])
            scored[modality] = [(hit[0], _cosine(query, row), row) for hit, row in zip(found, rows, strict=True)]
            hits.update((hit[0], hit) for hit in found)
        fused.append([(hits[id_], score) for id_, score in _fusion.fuse(scored, calibration, n_results)])
    return fused


def _cosine(a: np.ndarray[Any, Any], b: Sequence[float]) -> float:
    v = np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(v))
    return float(a @ v) / norms if norms > 0 else 0.0


_Sample = tuple[dict[str, np.ndarray[Any, Any]], dict[str, int]]
_samples: dict[tuple[str, str, int, tuple[str, ...]], _Sample] = {}
_samples_lock = threading.Lock()


def _background_sample(collection: Collection, modalities: tuple[str, ...]) -> _Sample:
    """Up to BACKGROUND_SAMPLE vectors per modality (seeded by the collection's id) and each modality's size.

    Kept while the collection's record count is unchanged, so repeated queries cost one ``count()``.
    """
    key = (str(collection.id), collection.name, collection.count(), modalities)
    with _samples_lock:
        cached = _samples.get(key)
    if cached is not None:
        return cached
    rows: dict[str, np.ndarray[Any, Any]] = {}
    sizes: dict[str, int] = {}
    for modality in modalities:
        ids = collection.get(where={MODALITY_KEY: modality}, include=[])["ids"]
        sizes[modality] = len(ids)
        if ids:
            seed = int.from_bytes(hashlib.sha256(f"{collection.id}:{modality}".encode()).digest()[:8], "little")
            picked = np.random.default_rng(seed).choice(len(ids), min(BACKGROUND_SAMPLE, len(ids)), replace=False)
            got = collection.get(ids=[ids[i] for i in sorted(picked)], include=cast(Any, ["embeddings"]))
            rows[modality] = np.asarray(got["embeddings"], dtype=np.float32)
    with _samples_lock:
        while len(_samples) >= 16:  # a few collections' samples; the oldest goes first
            del _samples[next(iter(_samples))]
        _samples[key] = (rows, sizes)
    return rows, sizes


def embedding_function_of(collection: Collection) -> MultimodalEmbeddingFunction:
    """The mmembed embedding function a collection embeds with (the one passed to Chroma, else the stored one)."""
    # Chroma keeps the function passed to create/get_collection only in this attribute; the stored config
    # would rebuild it without its local settings (an explicit key, cache, allow_private_urls).
    passed = getattr(collection, "_embedding_function", None)
    if isinstance(passed, MultimodalEmbeddingFunction):
        return passed
    stored = collection.configuration.get("embedding_function")
    if isinstance(stored, MultimodalEmbeddingFunction):
        return stored
    raise ConfigurationError(
        f"collection {collection.name!r} does not use an mmembed embedding function; create it with "
        "embedding_function=JinaMultimodalEmbeddingFunction() (or another provider's)"
    )


def _uri_of(original: object, item: Item) -> str | None:
    if isinstance(original, pathlib.PurePath):
        return str(original)
    if isinstance(original, ImageSource) and original.kind != "data":  # a data URI would copy the image in
        return original.uri
    if isinstance(original, MediaSource) and not original.uri.startswith("data:"):
        return original.uri
    if isinstance(item, ImageItem) and isinstance(item.raw, PageImage):
        item = item.raw.document
    if isinstance(item, (ImageItem, MediaItem)):
        if isinstance(item.raw, pathlib.Path):
            return str(item.raw)
        return item.url or item.gcs_uri
    return None


def _with_modality(meta: Mapping[str, Any] | None, modality: Modality, index: int) -> dict[str, Any]:
    merged = dict(meta or {})
    if merged.setdefault(MODALITY_KEY, modality) != modality:
        raise ValueError(
            f"item {index}: metadata says {MODALITY_KEY}={merged[MODALITY_KEY]!r} but the item is {modality}"
        )
    return merged


def _restrict(where: Mapping[str, Any] | None, modality: Modality) -> dict[str, Any]:
    clause = {MODALITY_KEY: modality}
    return {"$and": [dict(where), clause]} if where else clause


_Hit = tuple[str, float, Any, Any, Any]  # id, distance, metadata, document, uri


def _hits(ranking: QueryResult, q: int) -> list[_Hit]:
    ids = ranking["ids"][q]
    columns: list[list[list[Any]] | None] = [
        cast("list[list[Any]] | None", ranking.get(key)) for key in ("distances", "metadatas", "documents", "uris")
    ]
    rows = [col[q] if col is not None else [None] * len(ids) for col in columns]
    return list(zip(ids, *rows, strict=True))


def _fuse(rankings: list[list[_Hit]], n_results: int) -> list[tuple[_Hit, float]]:
    """Reciprocal rank fusion of ``rankings``: the best ``n_results`` hits with their fused scores."""
    scores: dict[str, float] = {}
    hits: dict[str, _Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit[0]] = scores.get(hit[0], 0.0) + 1.0 / (RRF_K + rank)
            hits.setdefault(hit[0], hit)
    order = sorted(scores, key=lambda id_: (-scores[id_], hits[id_][1], id_))[:n_results]
    return [(hits[id_], scores[id_]) for id_ in order]
