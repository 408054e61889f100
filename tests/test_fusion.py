"""mmembed.fusion on a synthetic space with CLIP's magnitudes: relevance beats the modality gap, chance stays low."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from mmembed.fusion import MIN_BACKGROUND, calibrate, fuse

DIM = 64
TEXT, IMAGE, AUDIO, VIDEO, SHARED = range(5)  # axes: one per modality, one every vector shares (the cone)
TOPICS = {"red": 5, "blue": 6, "green": 7, "sea": 8, "forest": 9, "truck": 10}
Records = dict[str, list[tuple[str, NDArray[np.float64]]]]


def vector(modality: int, topic: str | None, rng: np.random.Generator, noise: float = 0.08) -> NDArray[np.float64]:
    """2·modality + 0.8·shared + topic + a little noise off the structural axes, normalised."""
    v = np.zeros(DIM)
    v[modality], v[SHARED] = 2.0, 0.8
    if topic is not None:
        v[TOPICS[topic]] = 1.0
    v[12:] = rng.normal(0, noise, DIM - 12)
    return v / np.linalg.norm(v)


def collection(rng: np.random.Generator) -> Records:
    """30 texts (3 red), 20 photos (2 red), 3 sounds (none relevant), 1 red clip."""
    topics = [t for t in TOPICS if t != "red"]
    texts = [(f"text-{i}", vector(TEXT, "red" if i < 3 else topics[i % 5], rng)) for i in range(30)]
    images = [(f"image-{i}", vector(IMAGE, "red" if i < 2 else topics[i % 5], rng)) for i in range(20)]
    sounds = [(f"sound-{i}", vector(AUDIO, None, rng)) for i in range(3)]
    return {"text": texts, "image": images, "audio": sounds, "video": [("video-0", vector(VIDEO, "red", rng))]}


def ranked(records: Records, query: NDArray[np.float64]) -> list[tuple[str, float]]:
    samples = {m: np.stack([v for _, v in rows]) for m, rows in records.items()}
    calibration = calibrate(query, samples, {m: len(rows) for m, rows in records.items()}, reference="text")
    hits = {m: [(id_, float(v @ query), v) for id_, v in rows] for m, rows in records.items()}
    return fuse(hits, calibration, n_results=100)


def test_the_magnitudes_are_clips() -> None:
    rng = np.random.default_rng(0)
    query = vector(TEXT, "red", rng, noise=0.0)
    assert float(vector(IMAGE, "red", rng) @ query) == pytest.approx(0.29, abs=0.03)  # a matching photo
    assert float(vector(IMAGE, "sea", rng) @ query) == pytest.approx(0.11, abs=0.03)  # an unrelated one
    assert float(vector(TEXT, "sea", rng) @ query) > 0.75  # an unrelated text, far above the matching photo


def test_relevant_records_of_every_modality_lead_and_chance_stays_below_2() -> None:
    rng = np.random.default_rng(1)
    records = collection(rng)
    result = ranked(records, vector(TEXT, "red", rng, noise=0.0))
    top = {id_ for id_, _ in result[:6]}
    assert top == {"text-0", "text-1", "text-2", "image-0", "image-1", "video-0"}, result[:8]
    assert min(score for _, score in result[:6]) > 2 > max(score for _, score in result[6:]), result[:10]
    # the sounds hold nothing relevant: none of them comes near the top
    assert all(score < 2 for id_, score in result if id_.startswith("sound"))


def test_a_query_of_a_topic_no_record_has_leaves_every_score_at_chance() -> None:
    rng = np.random.default_rng(2)
    records = collection(rng)
    query = vector(TEXT, None, rng, noise=0.0)
    query[11] = 0.45  # a topic of its own
    result = ranked(records, query / np.linalg.norm(query))
    assert max(score for _, score in result) < 2, result[:5]


def test_scores_discount_the_size_of_a_modality() -> None:
    rng = np.random.default_rng(3)
    records = collection(rng)
    query = vector(TEXT, "red", rng, noise=0.0)
    samples = {m: np.stack([v for _, v in rows]) for m, rows in records.items()}
    sizes = {m: len(rows) for m, rows in records.items()}
    small = calibrate(query, samples, sizes, reference="text")
    large = calibrate(query, samples, {**sizes, "image": sizes["image"] * 1000}, reference="text")
    red_photo = records["image"][0][1]
    assert small.relevance("image", red_photo) - large.relevance("image", red_photo) == pytest.approx(3.0)


def test_a_modality_below_the_minimum_borrows_the_pooled_line() -> None:
    rng = np.random.default_rng(4)
    records = collection(rng)
    assert len(records["audio"]) < MIN_BACKGROUND <= len(records["image"])
    query = vector(TEXT, "red", rng, noise=0.0)
    samples = {m: np.stack([v for _, v in rows]) for m, rows in records.items()}
    calibration = calibrate(query, samples, {m: len(rows) for m, rows in records.items()}, reference="text")
    audio, video, image = (calibration.fits[m] for m in ("audio", "video", "image"))
    assert (audio.slope, audio.intercept, audio.scale) == (video.slope, video.intercept, video.scale)  # pooled
    assert (image.slope, image.intercept) != (audio.slope, audio.intercept)  # its own


def test_equal_scores_keep_a_deterministic_order_and_an_empty_collection_calibrates_nothing() -> None:
    rng = np.random.default_rng(5)
    query = vector(TEXT, "red", rng, noise=0.0)
    assert calibrate(query, {}, {}).fits == {}
    twin = vector(IMAGE, "sea", rng)
    records = {"image": [("b", twin), ("a", twin), *collection(rng)["image"]]}
    samples = {"image": np.stack([v for _, v in records["image"]])}
    calibration = calibrate(query, samples, {"image": 22}, reference="text")
    hits = {"image": [(id_, float(v @ query), v) for id_, v in records["image"]]}
    order = [id_ for id_, _ in fuse(hits, calibration, n_results=30)]
    assert order.index("a") == order.index("b") - 1
    assert math.isfinite(calibration.relevance("image", query))
