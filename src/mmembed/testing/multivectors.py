"""A synthetic multi-vector corpus for late-interaction tests and benchmarks (no model, no network).

Like page patches and query tokens of a ColPali-style model, only made up: there are ``concepts`` random unit
directions in ``dim`` dimensions and a few "background" directions (white margins, stopwords) that every
document shares. A document mixes rows near 2 to 6 of the concepts with background rows; a query is made
from one target document: most of its tokens lie near the target's concepts, the rest near the background.
Each concept appears in several documents, so a query's exact MaxSim top 10 holds its target and the
documents that share its concepts, in an order only MaxSim settles: a fair test of a shortlist.

>>> corpus = synthetic_corpus(documents=50, queries=5, seed=1)
>>> len(corpus.documents), corpus.documents[0].shape[1], len(corpus.queries)
(50, 128, 5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["SyntheticCorpus", "synthetic_corpus"]

Rows = NDArray[np.float32]


@dataclass(frozen=True)
class SyntheticCorpus:
    """Documents' and queries' multi-vectors (unit rows, float32); ``targets[i]`` made query ``i``."""

    documents: list[Rows]
    queries: list[Rows]
    targets: list[int]


def _unit(rows: NDArray[np.float64]) -> Rows:
    unit: Rows = (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
    return unit


def synthetic_corpus(
    documents: int = 3000,
    queries: int = 100,
    *,
    dim: int = 128,
    rows: tuple[int, int] = (20, 200),
    query_rows: tuple[int, int] = (8, 32),
    concepts: int | None = None,
    noise: float = 0.9,
    background: float = 0.3,
    seed: int = 0,
) -> SyntheticCorpus:
    """Make a corpus: ``documents`` of ``rows`` (low, high) vectors each and ``queries`` of ``query_rows``.

    ``noise`` is the norm of the Gaussian offset from a row's concept before normalising (0.9: cosine ≈ 0.74
    to it); ``background`` the share of background rows; ``concepts`` defaults to documents (each concept in
    about four documents).
    """
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((concepts or max(documents, 8), dim)))
    shared = _unit(rng.standard_normal((16, dim)))
    picks = [rng.choice(len(centres), size=int(rng.integers(2, 7)), replace=False) for _ in range(documents)]
    docs = [_rows(rng, centres[p], shared, int(rng.integers(rows[0], rows[1] + 1)), noise, background) for p in picks]
    targets = [int(t) for t in rng.integers(0, documents, size=queries)]
    made = [
        _rows(rng, centres[picks[t]], shared, int(rng.integers(query_rows[0], query_rows[1] + 1)), noise, background)
        for t in targets
    ]
    return SyntheticCorpus(docs, made, targets)


def _rows(
    rng: np.random.Generator, topics: Rows, shared: Rows, count: int, noise: float, background: float
) -> Rows:
    is_background = rng.random(count) < background
    base = np.where(
        is_background[:, None],
        shared[rng.integers(0, len(shared), count)],
        topics[rng.integers(0, len(topics), count)],
    )
    offset = rng.standard_normal(base.shape) * (noise / np.sqrt(base.shape[1]))
    return _unit(base + offset)
