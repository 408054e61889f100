"""Real traffic recorded from the live Nomic and Jina APIs parses to exactly the recorded vectors.

Run with ``make check-recorded``; it is not part of ``make test``. The recordings live beside the project in
``../shared/reference/recorded`` (reference data: not ours to copy, and the project's tests do not depend on
it); ``MMEMBED_RECORDED`` points elsewhere. ``tests/test_wire_facts.py`` pins what they show against the
emulator, so ``make test`` keeps checking those facts on any machine. Each recording is replayed through a full
:class:`mmembed.Embedder` with vcrpy, matching on method and path only (our request bodies differ from
the recording clients': we send task_type, {"text": ...} items and our own multipart).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import vcr
import yaml

from mmembed import Embedder

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "recorded"
RECORDED = Path(os.environ.get("MMEMBED_RECORDED", DEFAULT))
if not RECORDED.is_dir():
    raise pytest.UsageError(f"no recordings at {RECORDED}: set MMEMBED_RECORDED to the folder of real recordings")

# decode_compressed_response: vcrpy's urllib3-2 stubs hand back gzip bytes undecoded otherwise.
replayer = vcr.VCR(record_mode="none", match_on=["method", "path"], decode_compressed_response=True)


def interactions(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((RECORDED / name).read_text())
    return list(data["interactions"])


def response_json(interaction: dict[str, Any]) -> Any:
    body = interaction["response"]["body"]["string"]
    raw = body if isinstance(body, bytes) else body.encode("utf-8")
    encoding = {k.lower(): v for k, v in interaction["response"]["headers"].items()}.get("content-encoding")
    if encoding and "gzip" in encoding[0]:
        raw = gzip.decompress(raw)
    return json.loads(raw)


def unit(vectors: list[list[float]]) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def multipart_png(interaction: dict[str, Any]) -> bytes:
    body = interaction["request"]["body"]
    raw = body if isinstance(body, bytes) else body.encode("latin-1")
    start = raw.index(b"\x89PNG")
    end = raw.index(b"IEND") + 8
    return raw[start:end]


def test_nomic_text_with_dimensionality() -> None:
    (recorded,) = interactions("nomic_llm-nomic-api-embed_test_embed.yaml")
    expected = unit(response_json(recorded)["embeddings"])
    with replayer.use_cassette(str(RECORDED / "nomic_llm-nomic-api-embed_test_embed.yaml")):
        got = Embedder("nomic", api_key="replay-key", dimensions=64).embed(["hello world"])
    assert got.shape == (1, 64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_nomic_vision_multipart() -> None:
    (recorded,) = interactions("nomic_llm-nomic-api-embed_test_embed_vision.yaml")
    png = multipart_png(recorded)
    expected = unit(response_json(recorded)["embeddings"])
    with replayer.use_cassette(str(RECORDED / "nomic_llm-nomic-api-embed_test_embed_vision.yaml")):
        got = Embedder("nomic", api_key="replay-key").embed([png])
    assert got.shape == (1, 768)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_nomic_texts_and_image_interleaved_in_input_order() -> None:
    text_call, image_call = interactions("nomic_llm-nomic-api-embed_test_embed_combination.yaml")
    assert json.loads(text_call["request"]["body"])["texts"] == ["text", "more text"]
    text_vectors = unit(response_json(text_call)["embeddings"])
    image_vector = unit(response_json(image_call)["embeddings"])
    png = multipart_png(image_call)
    with replayer.use_cassette(str(RECORDED / "nomic_llm-nomic-api-embed_test_embed_combination.yaml")):
        got = Embedder("nomic", api_key="replay-key").embed(["text", png, "more text"])
    np.testing.assert_allclose(got[0], text_vectors[0], atol=1e-6)
    np.testing.assert_allclose(got[1], image_vector[0], atol=1e-6)
    np.testing.assert_allclose(got[2], text_vectors[1], atol=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "jina_superduper_test_embed_one.yaml",
        "jina_superduper_test_embed_batch.yaml",
        "jina_superduper_test_async_embed_one.yaml",
        "jina_superduper_test_async_embed_batch.yaml",
    ],
)
def test_jina_recordings_are_normalised_in_order(name: str) -> None:
    recorded = interactions(name)
    embedder = Embedder("jina", model="jina-embeddings-v2-base-en", api_key="replay-key")
    with replayer.use_cassette(str(RECORDED / name)):
        for interaction in recorded:
            data = sorted(response_json(interaction)["data"], key=lambda d: d["index"])
            body = interaction["request"]["body"]  # the async recordings did not keep their request bodies
            inputs = json.loads(body)["input"] if body else [f"unrecorded input {i}" for i in range(len(data))]
            raw = np.asarray([d["embedding"] for d in data], dtype=np.float32)
            assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)  # the 2023 API was not unit
            got = embedder.embed(inputs)
            assert got.shape == raw.shape
            np.testing.assert_allclose(got, unit(raw.tolist()), rtol=0, atol=1e-6)
