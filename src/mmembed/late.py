"""Late interaction: exact MaxSim, and MUVERA fixed-dimensional encodings that shortlist for it (numpy only).

A multi-vector embedding is one unit vector per query token or page patch (ColPali, ColQwen, or an API's
``return_multivector``). Documents are scored by **MaxSim** (ColBERT's late interaction, Chamfer similarity):
``maxsim(Q, D) = sum over query rows q of max over document rows d of <q, d>``.

Scoring every document that way is costly, so a **MUVERA** encoding (Dhulipala et al., NeurIPS 2024) turns each
vector set into one fixed-size vector whose inner product approximates MaxSim; an ordinary single-vector index
then shortlists candidates, and exact MaxSim re-ranks them. The encoding, as in google/graph-mining's
``fixed_dimensional_encoding.cc``, repeats ``repetitions`` times with independent randomness:

1. SimHash: ``k_sim`` Gaussian directions split space into ``2**k_sim`` buckets (the signs of the projections);
2. each point is projected to ``d_proj`` dimensions by a random ±1/√d_proj matrix (or kept: ``d_proj=None``);
3. a **document** averages the points of each bucket, and fills an empty bucket with the point whose SimHash
   bits are nearest the bucket's in Hamming distance; a **query** sums the points of each bucket, no fill;

and concatenates the blocks (``repetitions * 2**k_sim * d_proj`` values), optionally squeezed to ``d_final`` by a
Count-Sketch. The randomness comes from the PCG64 bit stream of ``seed`` (stable across numpy versions), so the
same :class:`MuveraSettings` give the same encodings in any process: store them with the collection.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> doc = normalize_rows(rng.standard_normal((30, 128)))
>>> query = normalize_rows(doc[:4] + 0.1 * rng.standard_normal((4, 128)))
>>> settings = MuveraSettings(seed=7)
>>> encode_documents([doc], settings).shape == (1, settings.fde_dim(128))
True
>>> round(maxsim(query, doc), 2) == round(float(exact_scores(query, [doc])[0]), 2)
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigurationError, InputError

__all__ = [
    "ENCODING",
    "MultiVectorIndex",
    "MuveraSettings",
    "as_multivector",
    "document_norm_bound",
    "encode_documents",
    "encode_queries",
    "exact_scores",
    "maxsim",
    "normalize_rows",
]

Array = NDArray[Any]
# Names the algorithm and its stream of random numbers; stored with the settings so that a future change of
# either is refused on an old collection instead of silently mixing encodings.
ENCODING = "mmembed-muvera-1"
UNIT_TOLERANCE = 1e-3
_CHUNK_POINTS = 8192  # points encoded at once: bounds the (points x repetitions x buckets) Hamming table


@dataclass(frozen=True)
class MuveraSettings:
    """How documents and queries are encoded.

    ``k_sim``: SimHash bits (``2**k_sim`` buckets per repetition); ``d_proj``: size of each bucket's block (None
    keeps the input dimension); ``repetitions``: independent repetitions concatenated; ``d_final``: optional
    Count-Sketch to this size; ``seed``: the randomness. The defaults give ``20 * 4 * 64 = 5120`` floats per
    record, whatever the multi-vectors' width; among 5,120-float settings, few buckets with wide blocks did best
    on benchmarks/late.py. Longer encodings shortlist better (``k_sim=4, d_proj=32, repetitions=40``: 20,480
    floats, needs about two thirds of the candidates for the same recall) at the cost of space and index time;
    the benchmark's table gives recall against length and candidates.
    """

    k_sim: int = 2
    d_proj: int | None = 64
    repetitions: int = 20
    d_final: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        limits = {"k_sim": (1, 12), "d_proj": (1, 4096), "repetitions": (1, 256), "d_final": (1, 1 << 20)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if value is None and name in ("d_proj", "d_final"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigurationError(f"MuveraSettings.{name} must be an integer from {low} to {high}: {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigurationError(f"MuveraSettings.seed must be an integer from 0 to 2**63-1, not {self.seed!r}")

    @property
    def buckets(self) -> int:
        return 1 << self.k_sim

    def fde_dim(self, dim: int) -> int:
        """The length of an encoding of ``dim``-dimensional vectors."""
        if self.d_final is not None:
            return self.d_final
        return self.repetitions * self.buckets * (self.d_proj or dim)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data, with the encoding's name (what a collection stores)."""
        return {"encoding": ENCODING, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MuveraSettings:
        """The settings :meth:`to_dict` wrote; refuses another encoding and unknown keys."""
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"MUVERA settings must be a mapping, not {type(data).__name__}")
        fields = dict(data)
        encoding = fields.pop("encoding", None)
        if encoding != ENCODING:
            raise ConfigurationError(f"MUVERA settings are for encoding {encoding!r}; this mmembed reads {ENCODING!r}")
        unknown = sorted(set(fields) - set(asdict(cls())))
        if unknown:
            raise ConfigurationError(f"unknown MUVERA settings {unknown}")
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MuveraSettings:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            raise ConfigurationError(f"MUVERA settings are not valid JSON: {err}") from None
        return cls.from_dict(data)


# -- validation -------------------------------------------------------------------------------------
def normalize_rows(rows: Array) -> NDArray[np.float32]:
    """``rows`` with each row scaled to unit length, as float32 (a zero row stays zero)."""
    array = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return (array / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def as_multivector(value: object, index: int, dim: int | None = None, *, normalize: bool = True) -> NDArray[np.float32]:
    """One item's multi-vector checked: a non-empty finite 2-D array (``dim`` wide when given), float32.

    With ``normalize`` (what the Chroma functions use), rows are scaled to unit length — MaxSim is a sum of
    cosines, and some servers send ColPali rows unnormalised; a zero row cannot be, and is refused.
    Raises :class:`~mmembed.InputError` naming ``index``.
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"a multi-vector must be a 2-D array of numbers ({err})", index=index) from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"a multi-vector must be a non-empty 2-D array (rows x dim), got shape {array.shape}",
                         index=index)
    if dim is not None and array.shape[1] != dim:
        raise InputError(f"a multi-vector must have {dim} columns (the collection's width), got {array.shape[1]}",
                         index=index)
    if not np.isfinite(array).all():
        raise InputError("a multi-vector holds NaN or infinite values", index=index)
    if not normalize:
        return array.astype(np.float32)
    norms = np.linalg.norm(array, axis=1)
    if (norms == 0).any():
        raise InputError(f"a multi-vector has an all-zero row (row {int(np.argmin(norms))})", index=index)
    return normalize_rows(array)


def _check_batch(multivectors: Sequence[Array]) -> list[NDArray[np.float32]]:
    if isinstance(multivectors, np.ndarray) and multivectors.ndim == 2:
        raise TypeError("pass a list of multi-vectors (one 2-D array per item), not a single 2-D array")
    arrays = [as_multivector(mv, i, normalize=False) for i, mv in enumerate(multivectors)]
    if arrays and len({a.shape[1] for a in arrays}) > 1:
        widths = sorted({a.shape[1] for a in arrays})
        raise InputError(f"multi-vectors of one call must share their width, got widths {widths}")
    return arrays


# -- exact scores -----------------------------------------------------------------------------------
def maxsim(query: Array, document: Array) -> float:
    """The late-interaction score: for each query row, its best dot product with a document row, summed."""
    q = np.asarray(query, dtype=np.float64)
    d = np.asarray(document, dtype=np.float64)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1] or 0 in q.shape or 0 in d.shape:
        raise ValueError(f"maxsim needs two non-empty 2-D arrays of one width, got {q.shape} and {d.shape}")
    return float((q @ d.T).max(axis=1).sum())


class MultiVectorIndex:
    """Documents' multi-vectors stacked once, so one query scores against all of them in one product.

    ``scores(query)`` is :func:`maxsim` against every document (float64, exact; ``dtype=np.float32`` for a
    faster ranking pass); ``top(query, k)`` the best ``k`` (indices and scores, best first; ties to the lower
    index).
    """

    def __init__(self, documents: Sequence[Array], dtype: type[np.floating[Any]] = np.float64) -> None:
        arrays = [np.asarray(d, dtype=dtype) for d in documents]
        if not arrays:
            raise ValueError("MultiVectorIndex needs at least one document")
        for i, a in enumerate(arrays):
            if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != arrays[0].shape[1]:
                raise InputError(f"a document must be a non-empty 2-D array of width {arrays[0].shape[1]}", index=i)
        self._rows = np.concatenate(arrays)
        self._starts = np.cumsum([0] + [a.shape[0] for a in arrays[:-1]])
        self.count = len(arrays)

    def scores(self, query: Array) -> NDArray[np.float64]:
        q = np.asarray(query, dtype=self._rows.dtype)
        if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != self._rows.shape[1]:
            raise ValueError(f"the query must be a non-empty 2-D array of width {self._rows.shape[1]}, got {q.shape}")
        best: NDArray[np.float64] = np.maximum.reduceat(self._rows @ q.T, self._starts, axis=0).sum(axis=1)
        return best

    def top(self, query: Array, k: int) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        scores = self.scores(query)
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return order, scores[order]


def exact_scores(query: Array, documents: Sequence[Array]) -> NDArray[np.float64]:
    """:func:`maxsim` of ``query`` against each of ``documents`` (batched)."""
    return MultiVectorIndex(documents).scores(query)


# -- MUVERA -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Randomness:
    simhash: NDArray[np.float64]  # dim x (repetitions * k_sim)
    projection: NDArray[np.float64] | None  # dim x (repetitions * d_proj), or None for the identity
    final_bucket: NDArray[np.intp] | None  # one Count-Sketch bucket and sign per encoding coordinate
    final_sign: NDArray[np.float64] | None


def _uniform(bits: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Uniform floats in (0, 1) from 64-bit words (53 bits each, never exactly 0)."""
    uniform: NDArray[np.float64] = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return uniform


@lru_cache(maxsize=16)
def _randomness(settings: MuveraSettings, dim: int) -> _Randomness:
    # Drawn from PCG64's raw stream (stable across numpy releases, unlike Generator's distributions) and
    # transformed here: Box-Muller normals, sign bits, bucket numbers. Changing this changes ENCODING.
    stream = np.random.PCG64(settings.seed)
    reps, k = settings.repetitions, settings.k_sim
    n = dim * reps * k
    u1, u2 = _uniform(stream.random_raw(n)), _uniform(stream.random_raw(n))
    simhash = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(dim, reps * k)
    projection = None
    if settings.d_proj is not None:
        signs = (stream.random_raw(dim * reps * settings.d_proj) >> np.uint64(63)).astype(np.float64) * 2.0 - 1.0
        projection = signs.reshape(dim, reps * settings.d_proj) / np.sqrt(settings.d_proj)
    final_bucket = final_sign = None
    if settings.d_final is not None:
        total = reps * settings.buckets * (settings.d_proj or dim)
        final_bucket = (_uniform(stream.random_raw(total)) * settings.d_final).astype(np.intp)
        final_sign = (stream.random_raw(total) >> np.uint64(63)).astype(np.float64) * 2.0 - 1.0
    return _Randomness(simhash, projection, final_bucket, final_sign)


@lru_cache(maxsize=16)
def document_norm_bound(settings: MuveraSettings, dim: int) -> float:
    """An upper bound on the length of any document encoding of unit-row multi-vectors of width ``dim``.

    Each block is an average of (or one) projected unit rows, so its length is at most the projection's largest
    singular value (1 for the identity); a Count-Sketch multiplies squared lengths by at most its fullest
    bucket's size. An index can then turn inner products into distances (see :mod:`mmembed.chroma`).
    """
    rand = _randomness(settings, dim)
    if rand.projection is None:
        squared = float(settings.repetitions)
    else:
        blocks = np.split(rand.projection, settings.repetitions, axis=1)
        squared = sum(float(np.linalg.norm(block, 2)) ** 2 for block in blocks)
    squared *= settings.buckets
    if rand.final_bucket is not None:
        squared *= float(np.bincount(rand.final_bucket).max())
    return float(np.sqrt(squared))


@lru_cache(maxsize=8)
def _hamming(k_sim: int) -> NDArray[np.int64]:
    """Hamming distance between every pair of bucket numbers (bit patterns)."""
    b = np.arange(1 << k_sim)
    x = b[:, None] ^ b[None, :]
    return np.array([[bin(int(v)).count("1") for v in row] for row in x], dtype=np.int64)


def encode_documents(multivectors: Sequence[Array], settings: MuveraSettings) -> NDArray[np.float32]:
    """The document encodings of ``multivectors`` (one ``n_i x d`` array each): one row each, float32."""
    return _encode(_check_batch(multivectors), settings, document=True)


def encode_queries(multivectors: Sequence[Array], settings: MuveraSettings) -> NDArray[np.float32]:
    """The query encodings of ``multivectors``: one row each; ``<query, document>`` approximates MaxSim."""
    return _encode(_check_batch(multivectors), settings, document=False)


def _encode(arrays: list[NDArray[np.float32]], settings: MuveraSettings, document: bool) -> NDArray[np.float32]:
    if not arrays:
        return np.zeros((0, settings.fde_dim(1 if settings.d_final else (settings.d_proj or 1))), np.float32)
    dim = arrays[0].shape[1]
    rand = _randomness(settings, dim)
    out = np.zeros((len(arrays), settings.repetitions * settings.buckets * (settings.d_proj or dim)), np.float64)
    start = 0
    while start < len(arrays):  # chunks of documents of at most _CHUNK_POINTS points (at least one document)
        stop, points = start + 1, arrays[start].shape[0]
        while stop < len(arrays) and points + arrays[stop].shape[0] <= _CHUNK_POINTS:
            points += arrays[stop].shape[0]
            stop += 1
        out[start:stop] = _encode_chunk(arrays[start:stop], settings, rand, document)
        start = stop
    if rand.final_bucket is not None and rand.final_sign is not None and settings.d_final is not None:
        out = _count_sketch(out, rand.final_bucket, rand.final_sign, settings.d_final)
    return out.astype(np.float32)


def _encode_chunk(
    arrays: list[NDArray[np.float32]], settings: MuveraSettings, rand: _Randomness, document: bool
) -> NDArray[np.float64]:
    reps, k, buckets = settings.repetitions, settings.k_sim, settings.buckets
    points = np.concatenate(arrays).astype(np.float64)
    sizes = np.array([a.shape[0] for a in arrays])
    owner = np.repeat(np.arange(len(arrays)), sizes)
    bits = (points @ rand.simhash).reshape(-1, reps, k) > 0
    bucket = (bits * (1 << np.arange(k))).sum(axis=2)  # (points, reps)
    if rand.projection is not None:
        projected = (points @ rand.projection).reshape(len(points), reps, -1)
    else:
        projected = np.broadcast_to(points[:, None, :], (len(points), reps, points.shape[1]))
    width = projected.shape[2]
    cell = ((owner[:, None] * reps + np.arange(reps)) * buckets + bucket).ravel()  # (doc, rep, bucket) per point
    flat = projected.reshape(-1, width)
    order = np.argsort(cell, kind="stable")
    cells, starts = np.unique(cell[order], return_index=True)
    sums = np.zeros((len(arrays) * reps * buckets, width))
    sums[cells] = np.add.reduceat(flat[order], starts, axis=0)
    if document:
        counts = np.bincount(cell, minlength=len(sums))
        filled = counts > 0
        sums[filled] /= counts[filled, None]
        empty = np.flatnonzero(~filled)
        if len(empty):
            sums[empty] = _nearest_points(bucket, sizes, flat, settings, empty)
    return sums.reshape(len(arrays), -1)


def _nearest_points(
    bucket: NDArray[np.int64],
    sizes: NDArray[np.int64],
    flat: NDArray[np.float64],
    settings: MuveraSettings,
    empty: NDArray[np.intp],
) -> NDArray[np.float64]:
    """For each empty (document, repetition, bucket) cell, the projected document point nearest in SimHash bits."""
    reps, buckets = settings.repetitions, settings.buckets
    count = len(bucket)
    # distance * count + point number: one min per document finds the nearest point, ties to the first
    key = _hamming(settings.k_sim)[bucket] * count + np.arange(count)[:, None, None]  # (points, reps, buckets)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nearest: NDArray[np.int64] = np.minimum.reduceat(key, starts, axis=0) % count  # (docs, reps, buckets)
    doc, rest = np.divmod(empty, reps * buckets)
    rep = rest // buckets
    point = nearest.reshape(len(sizes), reps * buckets)[doc, rest]
    filled: NDArray[np.float64] = flat[point * reps + rep]
    return filled


def _count_sketch(
    encoded: NDArray[np.float64], bucket: NDArray[np.intp], sign: NDArray[np.float64], size: int
) -> NDArray[np.float64]:
    """Each coordinate added, with its random sign, into its random bucket of ``size`` (sparse JL)."""
    order = np.argsort(bucket, kind="stable")
    targets, starts = np.unique(bucket[order], return_index=True)
    out = np.zeros((encoded.shape[0], size))
    out[:, targets] = np.add.reduceat((encoded * sign)[:, order], starts, axis=1)
    return out

