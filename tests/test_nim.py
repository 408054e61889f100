"""NVIDIA NIM: input_type for texts, data-URL images, text+image strings, hosted catalog vs container."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mmembed import Embedder, Interleaved
from mmembed.errors import ConfigurationError
from mmembed.testing import Emulator, colour_photo

VL = "nvidia/llama-nemotron-embed-vl-1b-v2"


def photo(colour: str) -> bytes:
    buf = io.BytesIO()
    colour_photo(colour, size=(320, 240)).save(buf, "JPEG")
    return buf.getvalue()


def test_texts_and_images_give_one_unit_row_each_in_input_order() -> None:
    with Emulator() as emu, Embedder("nim", base_url=emu.url_for("nim")) as embedder:
        vectors = embedder.embed(["a red car", photo("red"), "the blue sea"])
        (sea,) = embedder.embed(["the blue sea"])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert vectors.shape == (3, 2048)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[2], sea, atol=1e-6)
    text = next(b for b in bodies if "input_type" in b)
    assert text["input"] == ["a red car", "the blue sea"] and text["input_type"] == "passage"
    image = next(b for b in bodies if "modality" in b)
    assert image["modality"] == ["image"] and image["input"][0].startswith("data:image/jpeg;base64,")
    assert "input_type" not in image  # image inputs go without one


def test_embed_query_sends_input_type_query() -> None:
    with Emulator() as emu, Embedder("nim", base_url=emu.url_for("nim")) as embedder:
        (query,) = embedder.embed_query(["red"])
        (document,) = embedder.embed(["red"])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert [b["input_type"] for b in bodies] == ["query", "passage"]
    assert not np.allclose(query, document)


def test_text_and_image_travel_as_one_input_for_the_vl_embedder() -> None:
    with Emulator() as emu, Embedder("nim", base_url=emu.url_for("nim")) as embedder:
        (vector,) = embedder.embed([Interleaved(["quarterly revenue", photo("green")])])
        body = [r.json for r in emu.requests if r.method == "POST"][-1]
    assert body["modality"] == ["text_image"]
    (value,) = body["input"]
    assert value.startswith("quarterly revenue <img src='data:image/jpeg;base64,") and value.endswith("'/>")
    assert vector.shape == (2048,)


def test_the_hosted_catalog_is_the_default_and_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="NVIDIA_API_KEY"):
        Embedder("nim")
    monkeypatch.setenv("NVIDIA_API_KEY", "nvapi-test-0000")
    with Embedder("nim") as hosted:
        assert hosted.provider.base_url == "https://integrate.api.nvidia.com"
        assert hosted.provider.model_names() == {"model": VL}
        assert hosted.provider.headers() == {"Authorization": "Bearer nvapi-test-0000"}


def test_a_container_needs_no_key_and_its_model_is_discovered() -> None:
    with Emulator(nim_model="nvidia/nvclip") as emu, Embedder("nim", base_url=emu.url_for("nim")) as embedder:
        assert embedder.embed(["x", photo("red")]).shape == (2, 1024)
        assert embedder.provider.model_names() == {"model": "nvidia/nvclip"}
        assert "authorization" not in emu.requests[-1].headers


def test_unconfirmed_limits_are_settings() -> None:
    with Emulator() as emu, Embedder("nim", base_url=emu.url_for("nim"), batch_size=2, truncate="NONE") as emb:
        emb.embed(["a", "b", "c"])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert sorted(len(b["input"]) for b in bodies) == [1, 2] and {b["truncate"] for b in bodies} == {"NONE"}
    with pytest.raises(ConfigurationError, match="truncate"):
        Embedder("nim", base_url="http://localhost:8000", truncate="MIDDLE")
