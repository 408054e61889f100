"""Infinity: one modality per request, data URIs, discovery of the kinds from ``capabilities``."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mmembed import Embedder
from mmembed.errors import ConfigurationError, UnsupportedKindError
from mmembed.testing import Emulator, colour_photo

CLIP = "openai/clip-vit-base-patch32"


def photo(colour: str) -> bytes:
    buf = io.BytesIO()
    colour_photo(colour, size=(320, 240)).save(buf, "PNG")
    return buf.getvalue()


def test_texts_and_images_give_one_unit_row_each_in_input_order() -> None:
    with Emulator() as emu, Embedder("infinity", base_url=emu.url_for("infinity"), model=CLIP) as embedder:
        vectors = embedder.embed([photo("red"), "a red car", photo("blue"), "the blue sea"])
        (sea,) = embedder.embed(["the blue sea"])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert vectors.shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[3], sea, atol=1e-6)
    by_modality = {b["modality"]: b for b in bodies[:2]}
    assert by_modality["text"]["input"] == ["a red car", "the blue sea"]
    assert all(u.startswith("data:image/") and ";base64," in u for u in by_modality["image"]["input"])
    assert all(b["model"] == CLIP for b in bodies)


def test_kinds_come_from_the_servers_capabilities() -> None:
    with Emulator(infinity_model="BAAI/bge-small-en-v1.5") as emu:
        with Embedder("infinity", base_url=emu.url_for("infinity")) as embedder:
            assert embedder.embed(["just text"]).shape == (1, 384)
            with pytest.raises(UnsupportedKindError) as err:
                embedder.embed(["fine", photo("red")])
    assert err.value.index == 1
    assert "vllm" in str(err.value)  # names the providers that embed images


def test_a_model_the_server_does_not_serve_is_refused_naming_both() -> None:
    with Emulator() as emu:
        with Embedder("infinity", base_url=emu.url_for("infinity"), model="BAAI/bge-m3") as embedder:
            with pytest.raises(ConfigurationError) as err:
                embedder.embed(["x"])
    assert "BAAI/bge-m3" in str(err.value) and CLIP in str(err.value)


def test_a_url_prefix_server_is_reached_through_base_url() -> None:
    with Emulator() as emu, Embedder("infinity", base_url=emu.url_for("infinity") + "/v1") as embedder:
        assert embedder.embed(["x"]).shape == (1, 512)
        assert {r.path for r in emu.requests} == {"/infinity/v1/models", "/infinity/v1/embeddings"}


def test_query_prefix_goes_in_the_text() -> None:
    with Emulator() as emu:
        url = emu.url_for("infinity")
        with Embedder("infinity", base_url=url, query_prefix="Represent this query: ") as embedder:
            embedder.embed_query(["red"])
        body = [r.json for r in emu.requests if r.method == "POST"][-1]
    assert body["input"] == ["Represent this query: red"] and body["modality"] == "text"
