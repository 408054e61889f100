"""Calibrated fusion: similarities of different modalities turned into scores that compare, then merged.

A text query's cosine with a matching photo (≈0.3 on CLIP-style models) is below its cosine with an unrelated
note (≈0.8): raw similarities of two modalities do not compare. What compares is how far a hit stands out from
the *unrelated* records of its own modality for this query. :func:`calibrate` samples each modality's records
(most of them unrelated to any one query) and gives each modality a location and a scale for this query:

* a modality with at least :data:`MIN_BACKGROUND` records: the median of the query's similarities to its sampled
  records, and their spread (from the median absolute deviation);
* a smaller one (three photos, one sound: too few for a median that its relevant records would not move) borrows
  from the rest of the collection. Every sampled record gets a *baseline*, its lower-quartile similarity to the
  sampled records of the query's own modality, which stand in for queries (as CSLS, Conneau et al. 2018, scores
  a pair against each side's neighbourhood); a robust line (a distance-weighted Theil-Sen fit) over all sampled
  records maps baselines to this query's similarities — its slope says how the query's similarities scale
  against the stand-ins' (a short query is closer to everything), its intercept holds the modality gap — and
  each record of the small modality is located where the line puts its baseline, with the spread of the
  residuals around the line.

A hit's score is then, with ``z`` its similarity minus its location, over the scale,

    relevance = -log10(n * P(X >= z)),

``n`` the number of records of its modality and ``X`` a standard Laplace variable (exponential tails, heavier than
a normal's: embedding similarities have more close neighbours than a bell curve allows, so this errs towards
modest scores). In words: minus the decimal log of the number of unrelated records of that modality one would
expect to be at least this similar by chance. 2 means one such record in a hundred collections of this size; 0
or below, nothing a chance record would not reach. So a modality with nothing relevant brings nothing above the
relevant hits of another, and a large modality's luckiest unrelated record is discounted by ``n``. No constant
depends on a model: locations, scales and ``n`` come from the collection and the query. The calibration takes
most records of a modality to be unrelated to any one query: a modality where half the records match one query
looks to it like background. This module is numpy only; :func:`mmembed.chroma.query_mixed` feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MIN_BACKGROUND", "Calibration", "calibrate", "fuse"]

Matrix = NDArray[np.float32] | NDArray[np.float64]
Vector = Sequence[float] | NDArray[Any]

MIN_BACKGROUND = 10  # below this, a median and a MAD would be set by the one or two relevant records themselves
# Vectors are stored as float32: differences below this are rounding, not a property of the data.
RESOLUTION = 1e-6
_THEIL_SEN_POINTS = 400  # points of one line fit (80,000 pairs)
_LINE_SAMPLE = 64  # records per modality (and stand-ins) behind the pooled line: its cost stays small


@dataclass(frozen=True)
class _Fit:
    slope: float
    intercept: float
    scale: float
    population: int


@dataclass(frozen=True)
class Calibration:
    """One query's calibration: per modality, where an unrelated record's similarity is expected, and its spread.

    The expected similarity is ``slope * baseline + intercept``: a constant (slope 0) for a modality with a
    background of its own, the pooled line for a small one.
    """

    query: NDArray[np.float64]
    stand_ins: NDArray[np.float64]
    fits: Mapping[str, _Fit]
    typical: float  # the median baseline, for a record whose only stand-in is itself

    def relevance(self, modality: str, vector: Vector) -> float:
        """The calibrated score of a record of ``modality`` with this ``vector`` (see the module)."""
        fit = self.fits[modality]
        row = _unit_rows(np.asarray(vector, dtype=np.float64)[None, :])
        baseline = float(_baselines(row, self.stand_ins)[0]) if fit.slope else 0.0
        if math.isnan(baseline):
            baseline = self.typical
        z = (float(row[0] @ self.query) - (fit.slope * baseline + fit.intercept)) / fit.scale
        return -(math.log10(max(fit.population, 1)) + _log10_tail(z))


def calibrate(
    query: Vector,
    samples: Mapping[str, Matrix],
    populations: Mapping[str, int],
    reference: str | None = None,
) -> Calibration:
    """The calibration of ``query`` from ``samples`` (per modality, rows: sampled records' vectors).

    ``reference`` names the modality whose records stand in for queries (the query's own: ``"text"`` for a text
    query); when it holds no records, the modality most similar to the query does. ``populations`` are the
    modalities' sizes.
    """
    q = _unit_rows(np.asarray(query, dtype=np.float64)[None, :])[0]
    units = {m: _unit_rows(np.asarray(rows, dtype=np.float64)) for m, rows in samples.items() if len(rows)}
    if not units:
        return Calibration(q, np.zeros((0, len(q))), {}, 0.0)
    own = {m: rows @ q for m, rows in units.items()}
    fits = {}
    for m, sims in own.items():  # a modality with a background of its own: its records against its median
        if len(sims) >= MIN_BACKGROUND:
            location = float(np.median(sims))
            fits[m] = _Fit(0.0, location, max(_spread(sims - location), RESOLUTION), int(populations.get(m, len(sims))))
    if len(fits) == len(units):
        return Calibration(q, np.zeros((0, len(q))), fits, 0.0)
    # Small modalities: each record where the pooled line puts it, from its baseline.
    if reference not in units:  # none of the query's kind: the records nearest it stand in (PDF pages for a text)
        reference = max(units, key=lambda m: float(np.median(own[m])))
    stand_ins = units[str(reference)][:_LINE_SAMPLE]
    baselines = {m: _baselines(rows[:_LINE_SAMPLE], stand_ins) for m, rows in units.items()}
    every = np.concatenate(list(baselines.values()))
    slope, intercept, scale = _line(every, np.concatenate([own[m][:_LINE_SAMPLE] for m in units]))
    for m, sims in own.items():
        fits.setdefault(m, _Fit(slope, intercept, scale, int(populations.get(m, len(sims)))))
    typical = float(np.nanmedian(every)) if not np.all(np.isnan(every)) else 0.0
    return Calibration(q, stand_ins, fits, typical)


def fuse(
    hits: Mapping[str, Sequence[tuple[str, float, Vector]]],
    calibration: Calibration,
    n_results: int,
) -> list[tuple[str, float]]:
    """The best ``n_results`` of ``hits`` (per modality: ``(id, similarity, vector)``) by calibrated relevance.

    Equal scores go to the higher similarity, then to the smaller id, so the order is deterministic.
    """
    scored: dict[str, tuple[float, float]] = {}
    for modality, ranking in hits.items():
        for id_, similarity, vector in ranking:
            entry = (calibration.relevance(modality, vector), similarity)
            scored[id_] = max(scored.get(id_, entry), entry)
    order = sorted(scored, key=lambda id_: (-scored[id_][0], -scored[id_][1], id_))[:n_results]
    return [(id_, scored[id_][0]) for id_ in order]


def _unit_rows(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    result: NDArray[np.float64] = rows / np.where(norms > 0, norms, 1.0)
    return result


def _baselines(rows: NDArray[np.float64], stand_ins: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's lower-quartile similarity to the stand-ins, leaving out its pairing with itself (NaN: none).

    The lower quartile, not the median: with two or three stand-ins (a small collection) one related pair (the
    note on the sea, the blue photo) would otherwise set the baseline; the fitted line absorbs the difference
    between a quartile and a median wherever there are many.
    """
    result = np.full(rows.shape[0], np.nan)
    if not len(stand_ins):
        return result
    sims = stand_ins @ rows.T
    sims[np.isclose(sims, 1.0, rtol=0.0, atol=RESOLUTION)] = np.nan  # one record in both sets
    kept = ~np.all(np.isnan(sims), axis=0)
    result[kept] = np.nanquantile(sims[:, kept], 0.25, axis=0, method="lower")
    return result


def _line(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float, float]:
    """A robust line through (x, y) and the Laplace scale of the residuals around it (NaN x left out)."""
    known = ~np.isnan(x)
    x, y = x[known], y[known]
    if not len(x):
        return 0.0, 0.0, RESOLUTION
    slope, intercept = _theil_sen(x, y)
    return slope, intercept, max(_spread(y - (slope * x + intercept)), RESOLUTION)


def _theil_sen(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    """The median of pairwise slopes, each pair weighted by how far apart its x are; then the median intercept.

    Unweighted, the many pairs inside one tight cluster (six photos with nearly equal baselines) would set the
    slope with their noise; weighted by distance, pairs across clusters decide.
    """
    if len(x) > _THEIL_SEN_POINTS:  # evenly spaced points keep the pairs few
        keep = np.linspace(0, len(x) - 1, _THEIL_SEN_POINTS).astype(int)
        x, y = x[keep], y[keep]
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    ok = np.abs(dx) > RESOLUTION
    slope = _weighted_median((y[j] - y[i])[ok] / dx[ok], np.abs(dx[ok])) if ok.any() else 0.0
    return slope, float(np.median(y - slope * x))


def _weighted_median(values: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _spread(residuals: NDArray[np.float64]) -> float:
    """The Laplace scale whose median absolute deviation is that of ``residuals`` (MAD = scale x ln 2)."""
    centred = residuals - np.median(residuals)
    return float(np.median(np.abs(centred))) / math.log(2) if len(residuals) else RESOLUTION


def _log10_tail(z: float) -> float:
    """log10 P(X >= z) for a standard Laplace X: exponential tails, heavier than a normal's (conservative)."""
    if z >= 0:
        return (-z - math.log(2)) / math.log(10)
    return math.log10(1 - 0.5 * math.exp(z))
