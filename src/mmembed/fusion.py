"""Calibrated fusion: similarities of different modalities turned into scores that compare, then merged.

A text query's cosine with a matching photo (≈0.3 on CLIP-style models) is below its cosine with an unrelated
note (≈0.8): raw similarities of two modalities do not compare. What does compare is how far a hit stands out
from the *unrelated* records of its own modality for this query. So each modality gets a :class:`Background` for
the query — the median of the query's similarities to a sample of that modality's records (most of them
unrelated to any one query) and their spread (from the median absolute deviation) — and a hit's score is

    relevance = -log10(n * P(X >= z)),   z = (similarity - median) / spread,

where ``n`` is the number of records of the modality and ``X`` a standard Laplace variable (exponential tails,
heavier than a normal's: embedding similarities have more near neighbours than a bell curve allows, so this errs
towards modest scores). In words: minus the decimal log of the number of unrelated records of that modality one
would expect to be at least this similar by chance. 2 means one such record in a hundred collections of this
size; 0 or below, nothing a chance record would not reach. So a modality with nothing relevant brings nothing
above the relevant hits of another, and a large modality's luckiest unrelated record is discounted by ``n``. No
constant depends on a model: median, spread and ``n`` come from the collection and the query.

A modality too small for a background of its own (fewer than :data:`MIN_BACKGROUND` records: three photos, one
sound) borrows from the rest of the collection, as cross-domain similarity local scaling (CSLS, Conneau et al.
2018) does against hubs: each sampled record's *baseline* is its median similarity to the sampled records of the
query's own modality (they stand in for queries); the query's *shift* is the median, over all sampled records,
of its similarity minus the record's baseline. The small modality's median is then taken over its own
similarities together with its records' baselines plus that shift, and its spread is the one of those
differences pooled over all records. This module is numpy only; :func:`mmembed.chroma.query_mixed` feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MIN_BACKGROUND", "Background", "backgrounds", "fuse"]

Matrix = NDArray[np.float32] | NDArray[np.float64]

MIN_BACKGROUND = 10  # below this, a median and a MAD would be set by the one or two relevant records themselves
# Vectors are stored as float32: spreads below this are rounding, not a property of the data.
RESOLUTION = 1e-6
_THEIL_SEN_POINTS = 400  # points of the line fit (80,000 pairs)


@dataclass(frozen=True)
class Background:
    """Where the similarities of one modality's unrelated records to one query sit, and how far they spread."""

    location: float
    scale: float
    population: int  # records of the modality in the collection
    # A small modality's records each have their own location (what the query's line predicts from their
    # baselines); records not listed use ``location``.
    locations: Mapping[str, float] = field(default_factory=dict)

    def relevance(self, similarity: float, record: str | None = None) -> float:
        """The calibrated score of a record of this modality with ``similarity`` to the query (see module)."""
        location = self.locations.get(record, self.location) if record is not None else self.location
        z = (similarity - location) / self.scale
        return -(math.log10(max(self.population, 1)) + _log10_tail(z))


def backgrounds(
    query: Sequence[float] | NDArray[Any],
    samples: Mapping[str, Matrix],
    populations: Mapping[str, int],
    reference: str | None = None,
    ids: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Background]:
    """The background of each modality for ``query``, from ``samples`` (rows: sampled records' vectors).

    ``reference`` names the modality whose records stand in for queries when a modality is small (the query's
    own: ``"text"`` for a text query); when it holds no records, every sampled record does. ``ids`` (the
    samples' record ids, row for row) give a small modality's records their own locations.
    """
    q = _unit_rows(np.asarray(query, dtype=np.float64)[None, :])[0]
    units = {m: _unit_rows(np.asarray(rows, dtype=np.float64)) for m, rows in samples.items() if len(rows)}
    if not units:
        return {}
    stand_ins = units[reference] if reference in units else np.concatenate(list(units.values()))
    own = {m: rows @ q for m, rows in units.items()}
    baselines = {m: _baselines(rows, stand_ins) for m, rows in units.items()}
    # How this query's similarities follow the stand-ins' (a robust line over every sampled record: unrelated
    # records lie on it, relevant ones above); the spread of what is left is the pooled one.
    b = np.concatenate([baselines[m] for m in units])
    o = np.concatenate([own[m] for m in units])
    slope, intercept = _theil_sen(b[~np.isnan(b)], o[~np.isnan(b)])
    pooled = _spread(o[~np.isnan(b)] - (slope * b[~np.isnan(b)] + intercept))
    result = {}
    for m in units:
        if len(own[m]) >= MIN_BACKGROUND:
            location = float(np.median(own[m]))
            scale = _spread(own[m] - location)
            per_record: dict[str, float] = {}
        else:  # too few of its own: each record where the line puts it, from its baseline
            predicted = slope * baselines[m] + intercept
            known = predicted[~np.isnan(predicted)]
            location = float(np.median(np.concatenate([own[m], known])))
            scale = pooled
            names = (ids or {}).get(m, ())
            per_record = {id_: float(p) for id_, p in zip(names, predicted, strict=False) if not np.isnan(p)}
        size = int(populations.get(m, len(own[m])))
        result[m] = Background(location, max(scale, RESOLUTION), size, per_record)
    return result


def fuse(
    hits: Mapping[str, Sequence[tuple[str, float]]],
    calibration: Mapping[str, Background],
    n_results: int,
) -> list[tuple[str, float]]:
    """The best ``n_results`` of ``hits`` (per modality: ``(id, similarity)``) by calibrated relevance.

    Equal scores go to the higher similarity, then to the smaller id, so the order is deterministic.
    """
    scored: dict[str, tuple[float, float]] = {}
    for modality, ranking in hits.items():
        background = calibration[modality]
        for id_, similarity in ranking:
            entry = (background.relevance(similarity, id_), similarity)
            scored[id_] = max(scored.get(id_, entry), entry)
    order = sorted(scored, key=lambda id_: (-scored[id_][0], -scored[id_][1], id_))[:n_results]
    return [(id_, scored[id_][0]) for id_ in order]


def _unit_rows(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    result: NDArray[np.float64] = rows / np.where(norms > 0, norms, 1.0)
    return result


def _baselines(rows: NDArray[np.float64], stand_ins: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's lower-quartile similarity to the stand-in records, leaving out its pairing with itself (NaN: none).

    The lower quartile, not the median: with two or three stand-ins (a small collection) one related pair (the
    note on the sea, the blue photo) would otherwise set the baseline; the line fitted on baselines absorbs the
    difference between a quartile and a median wherever there are many.
    """
    sims = stand_ins @ rows.T
    sims[np.isclose(sims, 1.0, rtol=0.0, atol=RESOLUTION)] = np.nan  # one record in both sets
    result = np.full(rows.shape[0], np.nan)
    kept = ~np.all(np.isnan(sims), axis=0)
    result[kept] = np.nanquantile(sims[:, kept], 0.25, axis=0, method="lower")
    return result


def _theil_sen(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    """A robust line through (x, y): the median of pairwise slopes, each pair weighted by how far apart its x are.

    Unweighted, the many pairs inside one tight cluster (six photos with nearly equal baselines) would set the
    slope with their noise; weighted by distance, pairs across clusters decide, as they should.
    """
    if len(x) > _THEIL_SEN_POINTS:  # evenly spaced points keep the pairs few
        keep = np.linspace(0, len(x) - 1, _THEIL_SEN_POINTS).astype(int)
        x, y = x[keep], y[keep]
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    ok = np.abs(dx) > RESOLUTION
    if not ok.any():  # every baseline alike: a shift only
        return 1.0, float(np.median(y - x)) if len(x) else 0.0
    slope = _weighted_median((y[j] - y[i])[ok] / dx[ok], np.abs(dx[ok]))
    return slope, float(np.median(y - slope * x))


def _weighted_median(values: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _spread(residuals: NDArray[np.float64]) -> float:
    """The Laplace scale whose median absolute deviation is that of ``residuals`` (MAD = scale x ln 2)."""
    return float(np.median(np.abs(residuals))) / math.log(2) if len(residuals) else RESOLUTION


def _log10_tail(z: float) -> float:
    """log10 P(X >= z) for a standard Laplace X: exponential tails, heavier than a normal's (conservative)."""
    if z >= 0:
        return (-z - math.log(2)) / math.log(10)
    return math.log10(1 - 0.5 * math.exp(z))
