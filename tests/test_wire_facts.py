"""What the live APIs were seen to send, pinned here against the emulator.

The real recordings in ``../shared/reference/recorded`` are reference data: the project's tests do not read
them (``make check-recorded`` replays them on demand). The facts they show about the real servers are written
into these tests instead, so ``make test`` checks them on any machine:

* Nomic answered its vision endpoint gzip-compressed (``Content-Encoding: gzip``);
* Nomic's text endpoint took ``dimensionality: 64`` and answered 64 floats of unit norm;
* Nomic's image endpoint took multipart ``model`` + one ``images`` file part per image;
* texts and images sent together come back interleaved in input order (text, image, text);
* Jina's 2023 API answered vectors that were **not** unit-normalised, in ``data[].index`` order.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import requests
from PIL import Image

from conftest import make_embedder
from mmembed.testing import Emulator, colour_photo


def png(colour: str) -> bytes:
    buf = io.BytesIO()
    colour_photo(colour, size=(64, 48)).save(buf, "PNG")
    return buf.getvalue()


def test_answers_are_gzip_compressed_and_parsed(mmembed_emulator: Emulator) -> None:
    image = png("red")
    vectors = make_embedder("nomic", mmembed_emulator).embed([image])

    (sent,) = mmembed_emulator.requests
    assert "gzip" in sent.headers["accept-encoding"]
    raw = requests.post(
        mmembed_emulator.url + "/v1/embedding/image",
        data={"model": "nomic-embed-vision-v1.5"},
        files=[("images", ("a.png", image, "image/png"))],
        headers={"Authorization": "Bearer k", "Accept-Encoding": "gzip"},
        timeout=10,
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    expected = np.asarray(raw.json()["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_no_gzip_for_a_client_that_refuses_it(mmembed_emulator: Emulator) -> None:
    r = requests.post(
        mmembed_emulator.url + "/v1/embedding/text",
        json={"model": "nomic-embed-text-v1.5", "texts": ["a red car"]},
        headers={"Authorization": "Bearer k", "Accept-Encoding": "gzip;q=0, identity"},
        timeout=10,
    )
    assert r.status_code == 200 and "Content-Encoding" not in r.headers
    assert len(r.json()["embeddings"][0]) == 768


def test_nomic_text_dimensionality_64(mmembed_emulator: Emulator) -> None:
    got = make_embedder("nomic", mmembed_emulator, dimensions=64).embed(["hello world"])

    (sent,) = mmembed_emulator.requests
    assert sent.path == "/v1/embedding/text"
    assert sent.json["model"] == "nomic-embed-text-v1.5" and sent.json["dimensionality"] == 64
    assert sent.json["texts"] == ["hello world"]
    assert got.shape == (1, 64)
    assert np.linalg.norm(got[0]) == pytest.approx(1.0, abs=1e-5)


def test_nomic_texts_and_image_interleaved_in_input_order(mmembed_emulator: Emulator) -> None:
    image = png("blue")
    got = make_embedder("nomic", mmembed_emulator).embed(["text", image, "more text"])

    by_path = {r.path: r for r in mmembed_emulator.requests}
    assert by_path["/v1/embedding/text"].json["texts"] == ["text", "more text"]
    sent_image = by_path["/v1/embedding/image"]
    assert sent_image.form["model"] == ["nomic-embed-vision-v1.5"]
    assert [part[0] for part in sent_image.files] == ["images"]
    text_model, vision_model = "nomic-embed-text-v1.5", "nomic-embed-vision-v1.5"
    task = "search_document"
    expected = [
        mmembed_emulator.vector("nomic", text_model, text="text", task=task),
        mmembed_emulator.vector("nomic", vision_model, image=Image.open(io.BytesIO(sent_image.files[0][3]))),
        mmembed_emulator.vector("nomic", text_model, text="more text", task=task),
    ]
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float32), atol=1e-6)


def test_jina_non_unit_vectors_come_back_unit_in_order(mmembed_emulator_factory: Callable[..., Emulator]) -> None:
    emulator = mmembed_emulator_factory(jina_unnormalized=True)
    texts = ["a red car", "the blue sea", "green grass"]
    got = make_embedder("jina", emulator).embed(texts)

    raw = np.asarray([emulator.vector("jina", "jina-clip-v2", text=t) for t in texts])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
