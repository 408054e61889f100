"""Late interaction in Chroma: MUVERA encodings in the collection, multi-vectors beside it, exact MaxSim on top.

Chroma stores one vector per record. A late collection stores each record's MUVERA document encoding
(:mod:`mmembed.late`) as that vector, and keeps the record's multi-vector in a
**sibling collection** (``<name>.mmembed-mv``): the float32 rows as base64 in metadata values, split in two
records per id — ``hi:<id>`` holds each value's upper 16 bits (a bfloat16 copy, enough to rank) and ``lo:<id>``
the lower 16 (together: the exact float32 rows, so re-ranked scores are exact). Why there: it is Chroma itself, so
it persists wherever the collection does — a local directory, a ``chroma run`` server, Chroma Cloud — and is read
back by a reopen in any process with nothing else to ship; a metadata value is neither embedded nor full-text
indexed (a document would be, by trigrams), and the user's collection keeps its documents, metadata and ``where``
filters untouched. The MUVERA settings and seed, the multi-vector width and the sibling's name live in the
collection's metadata (``mmembed:late``), so every process encodes queries with the same randomness.

A query is encoded the same way and the collection returns ``over_fetch * n_results`` candidates by inner
product. Their upper halves come from the sibling and rank them by MaxSim in float32 (bfloat16 rows: a score
off by well under 1 %); the best ``n_results + 64`` get their lower halves, and exact MaxSim (float64, exact
rows) orders those. Reading a candidate costs its bytes, so this reads about half of what whole rows would.
(Collections written before the split, ``layout`` 1, keep one ``<id>`` record of whole rows and are read so.)

The index is an inner-product one. (Lifting the encodings by one coordinate, ``sqrt(M^2 - |x|^2)`` with ``M``
from :func:`~mmembed.late.document_norm_bound`, would make it an L2 one with the same order; with Chroma's HNSW
it found fewer of the true candidates on our tests, and answered differently after a reopen, so it is not used.)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import QueryResult
from chromadb.errors import ChromaError
from numpy.typing import NDArray

from .errors import ConfigurationError, InputError
from .fallbacks import Segment
from .inputs import DocumentItem, TextItem, to_item
from .late import (
    MultiVectorIndex,
    MuveraSettings,
    as_multivector,
    encode_documents,
    encode_queries,
)

__all__ = [
    "LATE_KEY",
    "OVER_FETCH",
    "LateQueryResult",
    "add_late",
    "create_late_collection",
    "delete_late_collection",
    "late_settings",
    "query_late",
]

LATE_KEY = "mmembed:late"  # collection metadata: {"muvera", "dim" (width or null), "store" (sibling), "layout"}
LAYOUT = 2  # of the sibling's records: 2 = "hi:<id>" and "lo:<id>" halves of the float32 bits; 1 = "<id>" whole
STORE_SUFFIX = ".mmembed-mv"
ROWS_KEY = "mmembed:multivector"  # in the sibling: base64 of the little-endian float32 rows
# Candidates fetched per wanted result: the recall/latency trade-off (benchmarks/late.py measures it).
OVER_FETCH = 120
# The index's search breadth: HNSW is approximate too, and its misses among the candidates cost recall.
EF_SEARCH = 1000
EF_CONSTRUCTION = 200
_READ_IDS = 1000  # ids per get: well under SQLite's 32,766 variables, and a server's answer stays moderate
_RESCORED = 64  # candidates beyond n_results read whole and scored exactly (bfloat16 ranks the rest)
_WRITE_BYTES = 16 << 20  # encoded multi-vectors per write request: a server's request stays moderate


class LateQueryResult(QueryResult):
    """A Chroma query result plus ``maxsim_scores``: each hit's exact MaxSim with its query (highest first)."""

    maxsim_scores: list[list[float]]


def create_late_collection(
    client: ClientAPI,
    name: str,
    settings: MuveraSettings | None = None,
    *,
    embedding_function: Any = None,
    metadata: Mapping[str, Any] | None = None,
    dim: int | None = None,
    get_or_create: bool = False,
) -> Collection:
    """Create a collection for :func:`add_late` and :func:`query_late`, and its sibling for the multi-vectors.

    ``settings`` (default :class:`~mmembed.late.MuveraSettings`) are stored in the collection's metadata with
    ``dim`` (the multi-vectors' width; None: learnt from the first :func:`add_late`). The index uses inner
    product, which is what the encodings approximate MaxSim with. ``embedding_function`` is the mmembed
    function whose embedder makes multi-vectors for ``items=``/``query_texts=``; leave it None when you pass
    precomputed ``multivectors=`` (the collection then stores no function config, so a reopen needs none).
    """
    store = name + STORE_SUFFIX
    late = {"muvera": (settings or MuveraSettings()).to_dict(), "dim": _check_dim(dim), "store": store,
            "layout": LAYOUT}
    meta = {**dict(metadata or {}), LATE_KEY: json.dumps(late, sort_keys=True)}
    if embedding_function is None:
        # chromadb 1.x: a configuration= without a function is stored as a "legacy" function config, which
        # warns on every read; the metadata form of the space stores none.
        collection = client.create_collection(
            name,
            metadata={**meta, "hnsw:space": "ip", "hnsw:search_ef": EF_SEARCH, "hnsw:construction_ef": EF_CONSTRUCTION},
            embedding_function=None,
            get_or_create=get_or_create,
        )
    else:
        collection = client.create_collection(
            name,
            metadata=meta,
            configuration={"hnsw": {"space": "ip", "ef_search": EF_SEARCH, "ef_construction": EF_CONSTRUCTION}},
            embedding_function=embedding_function,
            get_or_create=get_or_create,
        )
    client.get_or_create_collection(store, metadata={"mmembed:late-store-of": name}, embedding_function=None)
    late_settings(collection)  # an existing collection (get_or_create) must be a late one too
    return collection


def delete_late_collection(client: ClientAPI, name: str) -> None:
    """Delete a late collection and its multi-vector sibling."""
    store = _late(client.get_collection(name, embedding_function=None))["store"]
    client.delete_collection(name)
    client.delete_collection(store)


def late_settings(collection: Collection) -> MuveraSettings:
    """The MUVERA settings recorded in ``collection``; ConfigurationError when it is not a late collection."""
    return MuveraSettings.from_dict(_late(collection)["muvera"])


def _late(collection: Collection) -> dict[str, Any]:
    raw = (collection.metadata or {}).get(LATE_KEY)
    if not isinstance(raw, str):
        raise ConfigurationError(
            f"collection {collection.name!r} was not created for late interaction (no {LATE_KEY!r} in its "
            "metadata); create it with mmembed.chroma.create_late_collection(client, name)"
        )
    try:
        late = json.loads(raw)
    except ValueError as err:
        raise ConfigurationError(f"collection {collection.name!r}: {LATE_KEY!r} is not valid JSON: {err}") from None
    if not isinstance(late, dict) or not isinstance(late.get("store"), str) or "muvera" not in late:
        raise ConfigurationError(f"collection {collection.name!r}: {LATE_KEY!r} is damaged: {raw[:200]!r}")
    late.setdefault("layout", 1)  # written before the split
    if late["layout"] not in (1, LAYOUT):
        raise ConfigurationError(f"collection {collection.name!r} has sibling layout {late['layout']!r}, which "
                                 "a newer mmembed wrote; upgrade mmembed to read it")
    space = (collection.configuration.get("hnsw") or {}).get("space")
    if space is not None and space != "ip":
        raise ConfigurationError(f"collection {collection.name!r} uses the {space!r} space; late needs 'ip'")
    return late


def _check_dim(dim: object) -> int | None:
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ConfigurationError(f"dim must be a positive integer or None, not {dim!r}")
    return dim


def _store(collection: Collection, late: Mapping[str, Any]) -> Collection:
    """The sibling collection holding the multi-vectors (through the same client connection)."""
    server = collection._client
    try:
        model = server.get_collection(late["store"], tenant=collection.tenant, database=collection.database)
    except (ChromaError, ValueError) as err:  # NotFoundError, locally or from a server
        raise ConfigurationError(
            f"the multi-vectors of collection {collection.name!r} should be in collection {late['store']!r}, "
            f"which cannot be opened ({err})"
        ) from None
    return Collection(client=server, model=model, embedding_function=None)


# -- add --------------------------------------------------------------------------------------------
def add_late(
    collection: Collection,
    ids: Sequence[str],
    items: Sequence[object] | None = None,
    multivectors: Sequence[Any] | None = None,
    metadatas: Sequence[Mapping[str, Any] | None] | None = None,
) -> None:
    """Add records for late interaction: their MUVERA encodings here, their multi-vectors in the sibling.

    Give either ``multivectors`` (one ``n_i x d`` array per id: ColPali on your own GPUs, say) or ``items``,
    embedded by the collection's mmembed function with ``Embedder.embed_multi``. An item that is a PDF goes in
    page by page (:meth:`~mmembed.Embedder.expand`): its records get ids ``<id>#<n>`` and ``page`` (and
    ``passage``) metadata, so a hit names its page; :class:`~mmembed.Segment` objects from ``expand`` are taken
    too, with their own ids. Rows are normalised to unit length; the width must match the collection's. As in
    Chroma's ``add``, an id that exists already is left as it is.
    """
    late = _late(collection)
    ids = [str(i) for i in ids]
    metas: list[Mapping[str, Any] | None] = list(metadatas) if metadatas is not None else [None] * len(ids)
    if (items is None) == (multivectors is None):
        raise ValueError("add_late needs exactly one of items= or multivectors=")
    if items is not None:
        ids, arrays, metas, documents = _embed_items(collection, ids, list(items), metas)
    else:
        arrays, documents = list(cast(Sequence[Any], multivectors)), None
    if not len(ids) == len(arrays) == len(metas):
        raise ValueError(f"ids, items/multivectors and metadatas differ in length ({len(ids)}, {len(arrays)}, "
                         f"{len(metas)})")
    if not ids or len(set(ids)) != len(ids):
        raise ValueError("add_late needs at least one id, and ids must be unique within one call")
    first = as_multivector(arrays[0], 0, late["dim"])
    dim = int(first.shape[1])
    rows = [first, *(as_multivector(a, i, dim) for i, a in enumerate(arrays[1:], start=1))]
    if late["dim"] is None:
        _record_dim(collection, late, dim)
    existing = set(collection.get(ids=ids, include=[])["ids"])
    keep = [i for i, id_ in enumerate(ids) if id_ not in existing]
    if not keep:
        return
    encoded = encode_documents([rows[i] for i in keep], late_settings(collection))
    _write_rows(_store(collection, late), [ids[i] for i in keep], [rows[i] for i in keep], late["layout"])
    for start, stop in _spans(len(keep), collection._client.get_max_batch_size()):
        part = keep[start:stop]
        chosen = [documents[i] for i in part] if documents is not None else None
        collection.add(
            ids=[ids[i] for i in part],
            embeddings=encoded[start:stop],
            metadatas=[cast("dict[str, Any]", dict(metas[i] or {})) or None for i in part],  # type: ignore[misc]
            documents=cast("list[str]", chosen) if chosen and any(d is not None for d in chosen) else None,
        )


def _spans(count: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, count)) for start in range(0, count, max(1, size))]


def _record_dim(collection: Collection, late: dict[str, Any], dim: int) -> None:
    late["dim"] = dim
    metadata = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    metadata[LATE_KEY] = json.dumps(late, sort_keys=True)
    collection.modify(metadata=metadata)


def _write_rows(store: Collection, ids: list[str], rows: list[NDArray[np.float32]], layout: int) -> None:
    """Upsert each id's rows into the sibling, in requests of bounded size (a retried add replaces them).

    An id's records go in one request (layout 2: both halves), so a failure never leaves half of them.
    """
    per_id = 2 if layout == LAYOUT else 1
    limit = max(1, store._client.get_max_batch_size() // per_id)
    start = 0
    while start < len(ids):
        stop, size = start, 0
        while stop < len(ids) and stop - start < limit and (stop == start or size < _WRITE_BYTES):
            size += rows[stop].nbytes
            stop += 1
        keys: list[str] = []
        metadatas: list[dict[str, str | int]] = []
        for id_, r in zip(ids[start:stop], rows[start:stop], strict=True):
            count = int(r.shape[0])
            if per_id == 1:
                keys.append(id_)
                metadatas.append({ROWS_KEY: _pack(np.ascontiguousarray(r, dtype="<f4")), "rows": count})
                continue
            high, low = _halves(r)
            keys += [_HIGH + id_, _LOW + id_]
            metadatas += [{ROWS_KEY: _pack(high), "rows": count}, {ROWS_KEY: _pack(low), "rows": count}]
        store.upsert(
            ids=keys,
            embeddings=np.ones((len(keys), 1), dtype=np.float32),  # unused: Chroma wants a vector per record
            metadatas=metadatas,  # type: ignore[arg-type]
        )
        start = stop


_HIGH, _LOW = "hi:", "lo:"  # the sibling's record ids of an id's two halves (layout 2)


def _halves(rows: NDArray[np.float32]) -> tuple[NDArray[np.uint16], NDArray[np.uint16]]:
    """The upper and lower 16 bits of each float32 (the upper half alone is the value as bfloat16, truncated)."""
    bits = np.ascontiguousarray(rows, dtype="<f4").view("<u4")
    return (bits >> 16).astype("<u2"), (bits & 0xFFFF).astype("<u2")


def _join(high: NDArray[np.uint16], low: NDArray[np.uint16] | None) -> NDArray[np.float32]:
    """Float32 rows from their halves: exact with ``low``, the bfloat16 value (lower bits zero) without."""
    bits = high.astype("<u4") << np.uint32(16)
    if low is not None:
        bits |= low.astype("<u4")
    joined: NDArray[np.float32] = bits.view("<f4").astype(np.float32, copy=False)
    return joined


def _pack(values: NDArray[Any]) -> str:
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpack(meta: Mapping[str, Any] | None, id_: str, dim: int, dtype: str = "<f4") -> NDArray[Any]:
    """One sibling record's values (``rows x dim`` of ``dtype``), checked."""
    if not meta or not isinstance(meta.get(ROWS_KEY), str):
        raise ConfigurationError(f"record {id_!r} has no multi-vector in the sibling collection; add it with add_late")
    try:
        values = np.frombuffer(binascii.a2b_base64(meta[ROWS_KEY]), dtype=dtype)
    except (binascii.Error, ValueError):
        values = np.zeros(0, dtype=dtype)
    if values.size == 0 or values.size != int(meta.get("rows", -1)) * dim:
        raise ConfigurationError(f"the stored multi-vector of {id_!r} is damaged ({values.size} values)")
    return values.reshape(-1, dim)  # read-only: a view of the decoded bytes


def _embed_items(
    collection: Collection, ids: list[str], items: list[object], metas: list[Mapping[str, Any] | None]
) -> tuple[list[str], list[Any], list[Mapping[str, Any] | None], list[str | None]]:
    """Expand PDFs into pages, then embed every piece with the collection's embedder (documents keep texts)."""
    if not len(ids) == len(items) == len(metas):
        raise ValueError(f"ids, items and metadatas differ in length ({len(ids)}, {len(items)}, {len(metas)})")
    from .chroma import MODALITY_KEY, embedding_function_of  # here: mmembed.chroma imports this module

    embedder = embedding_function_of(collection).embedder
    out_ids: list[str] = []
    pieces: list[object] = []
    out_metas: list[Mapping[str, Any] | None] = []
    for i, (id_, item, meta) in enumerate(zip(ids, items, metas, strict=True)):
        segments, expanded = _segments(embedder, item, i)
        for n, segment in enumerate(segments):
            out_ids.append(f"{id_}#{n}" if expanded else id_)
            pieces.append(segment.item)
            out_metas.append({**segment.metadata, MODALITY_KEY: segment.modality, **(meta or {})})
    arrays = _call(embedder, "embed_multi", pieces)
    documents = [piece.text if isinstance(piece, TextItem) else None for piece in pieces]
    return out_ids, arrays, out_metas, documents


def _segments(embedder: Any, item: object, index: int) -> tuple[list[Segment], bool]:
    """The pieces of one item, and whether it was expanded (a PDF: one piece per page or passage)."""
    if isinstance(item, Segment):
        return [item], False
    try:
        internal = to_item(item)
    except InputError as err:
        raise err.at(index) from err.__cause__
    if isinstance(internal, DocumentItem):
        try:
            return list(embedder.expand([internal])), True
        except InputError as err:
            raise err.at(index) from err.__cause__
    return [Segment(internal, index, internal.kind)], False


def _call(embedder: Any, method: str, items: list[object]) -> list[Any]:
    """``embedder.<method>(items)``: the Embedder's multi-vector output, checked."""
    function = getattr(embedder, method, None)
    if not callable(function):
        raise ConfigurationError(
            f"this mmembed Embedder has no {method}() (multi-vector output); pass precomputed multi-vectors "
            "(multivectors= / query_multivectors=) or use an mmembed version that has it"
        )
    arrays = list(function(items))
    if len(arrays) != len(items):
        raise ConfigurationError(f"{method}() returned {len(arrays)} multi-vectors for {len(items)} items")
    return arrays


# -- query ------------------------------------------------------------------------------------------
def query_late(
    collection: Collection,
    query_texts: Sequence[str] | None = None,
    query_images: Sequence[object] | None = None,
    query_multivectors: Sequence[Any] | None = None,
    n_results: int = 10,
    where: Mapping[str, Any] | None = None,
    *,
    over_fetch: int = OVER_FETCH,
) -> LateQueryResult:
    """Query by late interaction: MUVERA candidates, re-ranked by exact MaxSim; one result list per query.

    Queries are ``query_multivectors`` (precomputed), or ``query_texts`` then ``query_images`` embedded by the
    collection's embedder (``Embedder.embed_query_multi``). ``over_fetch * n_results`` candidates come from
    the index (``where`` filters them as in Chroma), and the best ``n_results`` by exact MaxSim are returned in
    Chroma's query shape (``ids``, ``metadatas``, ``documents``, ``uris``) with ``maxsim_scores`` (the exact
    MaxSim, highest first) and ``distances`` = ``1 - maxsim / query rows`` (one minus the mean best cosine, so
    lower is better, as in Chroma).
    """
    late = _late(collection)
    if isinstance(n_results, bool) or not isinstance(n_results, int) or n_results < 1:
        raise ValueError(f"n_results must be a positive integer, got {n_results!r}")
    if isinstance(over_fetch, bool) or not isinstance(over_fetch, int) or over_fetch < 1:
        raise ValueError(f"over_fetch must be a positive integer, got {over_fetch!r}")
    queries = _queries(collection, late, query_texts, query_images, query_multivectors)
    result = _empty_result(len(queries))
    if late["dim"] is None or collection.count() == 0:
        return result
    candidates = collection.query(  # ids only: the winners' metadata is read once they are known
        query_embeddings=encode_queries(queries, late_settings(collection)),
        n_results=n_results * over_fetch,
        where=dict(where) if where else None,
        include=[],
    )
    store, dim = _store(collection, late), int(late["dim"])
    wanted = sorted({id_ for hits in candidates["ids"] for id_ in hits})
    if late["layout"] == 1:  # whole rows under each id: rank and score with them
        exact = _read_rows(store, wanted, dim, "", "<f4")
        shortlists = [list(hits) for hits in candidates["ids"]]
    else:
        high = _read_rows(store, wanted, dim, _HIGH, "<u2")
        rough = {id_: _join(h, None) for id_, h in high.items()}
        shortlists = [_shortlist(query, hits, rough, n_results + _RESCORED)
                      for query, hits in zip(queries, candidates["ids"], strict=True)]
        chosen = sorted({id_ for ids in shortlists for id_ in ids})
        low = _read_rows(store, chosen, dim, _LOW, "<u2")
        exact = {id_: _join(high[id_], low[id_]) for id_ in chosen if id_ in low}
    for q, query in enumerate(queries):
        _rerank(result, q, query, shortlists[q], exact, n_results)
    _fill_columns(collection, result)
    return result


def _empty_result(count: int) -> LateQueryResult:
    def lists() -> list[list[Any]]:
        return [[] for _ in range(count)]

    return LateQueryResult(ids=lists(), distances=lists(), metadatas=lists(), documents=lists(), uris=lists(),
                           embeddings=None, data=None, included=["metadatas", "documents", "distances", "uris"],
                           maxsim_scores=lists())


def _read_rows(store: Collection, ids: list[str], dim: int, prefix: str, dtype: str) -> dict[str, NDArray[Any]]:
    """The sibling's records ``prefix + id`` of ``ids``, by id, in gets of bounded size (SQLite caps a
    statement's ids); an id without its record is left out (:func:`_rerank` names it)."""
    rows: dict[str, NDArray[Any]] = {}
    for start in range(0, len(ids), _READ_IDS):
        stored = store.get(ids=[prefix + id_ for id_ in ids[start:start + _READ_IDS]], include=["metadatas"])
        metas = stored["metadatas"] or []
        for key, meta in zip(stored["ids"], metas, strict=True):
            id_ = key[len(prefix):]
            rows[id_] = _unpack(meta, id_, dim, dtype)
    return rows


def _shortlist(query: NDArray[np.float32], ids: list[str], rows: Mapping[str, NDArray[np.float32]],
               keep: int) -> list[str]:
    """The ``keep`` best of ``ids`` by MaxSim against ``rows`` (in float32), in the index's order."""
    _check_scored(ids, rows)
    if len(ids) <= keep:
        return list(ids)
    rough = MultiVectorIndex([rows[id_] for id_ in ids], dtype=np.float32).scores(query)
    best = np.sort(np.argsort(-rough, kind="stable")[:keep])
    return [ids[i] for i in best]


def _check_scored(ids: list[str], rows: Mapping[str, Any]) -> None:
    missing = [id_ for id_ in ids if id_ not in rows]
    if missing:
        raise ConfigurationError(
            f"records {missing[:5]} of collection have no multi-vector in the sibling collection; add them with "
            "add_late (records added by collection.add cannot be scored)"
        )


def _fill_columns(collection: Collection, result: LateQueryResult) -> None:
    """Read the winners' metadatas, documents and uris (one get for every query) into ``result``."""
    winners = sorted({id_ for hits in result["ids"] for id_ in hits})
    found: dict[str, tuple[Any, Any, Any]] = {}
    for start in range(0, len(winners), _READ_IDS):
        got = collection.get(ids=winners[start:start + _READ_IDS], include=["metadatas", "documents", "uris"])
        count = len(got["ids"])
        columns = [cast("list[Any]", got.get(key) or [None] * count) for key in ("metadatas", "documents", "uris")]
        found.update(zip(got["ids"], zip(*columns, strict=True), strict=True))
    for q, hits in enumerate(result["ids"]):
        missing = [id_ for id_ in hits if id_ not in found]
        if missing:  # deleted between the query and this read
            raise ConfigurationError(f"records {missing[:5]} were deleted while the query ran; query again")
        for column, key in enumerate(("metadatas", "documents", "uris")):
            cast("list[list[Any]]", result[key])[q] = [found[id_][column] for id_ in hits]  # type: ignore[literal-required]


def _queries(
    collection: Collection,
    late: Mapping[str, Any],
    texts: Sequence[str] | None,
    images: Sequence[object] | None,
    multivectors: Sequence[Any] | None,
) -> list[NDArray[np.float32]]:
    items: list[object] = [*(texts or []), *(images or [])]
    if isinstance(texts, str):
        raise TypeError("query_texts takes a list of strings; wrap a single query in a list")
    if (not items) == (multivectors is None) or (items and multivectors is not None):
        raise ValueError("query_late needs query_multivectors, or query_texts and/or query_images (not both kinds)")
    if multivectors is None:
        from .chroma import embedding_function_of  # here: mmembed.chroma imports this module

        multivectors = _call(embedding_function_of(collection).embedder, "embed_query_multi", items)
    if isinstance(multivectors, np.ndarray) and multivectors.ndim == 2:
        raise TypeError("query_multivectors takes a list of 2-D arrays (one per query), not a single 2-D array")
    if not multivectors:
        raise ValueError("query_late needs at least one query")
    return [as_multivector(mv, i, late["dim"]) for i, mv in enumerate(multivectors)]


def _rerank(
    result: LateQueryResult,
    q: int,
    query: NDArray[np.float32],
    ids: list[str],
    rows: Mapping[str, NDArray[np.float32]],
    n_results: int,
) -> None:
    """Fill ids, scores and distances of result list ``q``: the best ``n_results`` of ``ids`` by exact MaxSim."""
    if not ids:
        return
    _check_scored(ids, rows)
    scores = MultiVectorIndex([rows[id_] for id_ in ids]).scores(query)
    order = np.lexsort((np.arange(len(ids)), -scores))[:n_results]  # ties keep the index's order
    result["ids"][q] = [ids[i] for i in order]
    result["maxsim_scores"][q] = [float(scores[i]) for i in order]
    cast("list[list[float]]", result["distances"])[q] = [1.0 - float(scores[i]) / len(query) for i in order]
