"""Embedder.embed_multi / embed_query_multi: multi-vectors (one unit row per token or image patch), on the emulator."""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from conftest import CANARY_KEY, png_bytes
from mmembed import ConfigurationError, Embedder, InputError
from mmembed.cache import EmbeddingCache
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.models import find_model
from mmembed.testing.space import multivector

V4 = "jina-embeddings-v4"


def jina_v4(emulator: Emulator, **options: object) -> Embedder:
    return Embedder("jina", model=V4, base_url=emulator.url, api_key=CANARY_KEY, **options)


def expected_rows(*, text: str | None = None, photo: bytes | None = None, query: bool = False) -> np.ndarray:
    """What the emulator's Jina v4 answers for one item (its fake space), as the client should return it."""
    from mmembed.testing.imagedata import decode_image

    spec = find_model("jina", V4)
    assert spec is not None
    image = decode_image(photo) if photo is not None else None
    return np.array(multivector(spec, text=text, image=image, query=query), dtype=np.float32)


def test_jina_v4_gives_one_unit_row_per_token_and_per_patch(mmembed_emulator: Emulator) -> None:
    photo = png_bytes(colour_photo("red", size=(64, 48)))
    with jina_v4(mmembed_emulator, dimensions=512) as embedder:
        text, image = embedder.embed_multi(["a red car, parked", photo])
        assert embedder.multivector_dimensions == 128
    assert text.dtype == np.float32 and text.shape == (5, 128)  # a, red, car, ",", parked
    assert image.shape == (16, 128)  # the emulator's 4x4 grid of patches
    assert np.linalg.norm(np.vstack([text, image]), axis=1) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(text, expected_rows(text="a red car, parked"), atol=1e-6)
    (request,) = mmembed_emulator.requests
    body = request.json
    assert body["return_multivector"] is True and body["task"] == "retrieval.passage"
    assert "dimensions" not in body  # the API refuses it with return_multivector; dimensions= is embed()'s
    assert body["input"][0] == {"text": "a red car, parked"} and set(body["input"][1]) == {"image"}
    assert base64.b64decode(body["input"][1]["image"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_queries_use_the_query_task(mmembed_emulator: Emulator) -> None:
    with jina_v4(mmembed_emulator) as embedder:
        (query,) = embedder.embed_query_multi(["red car"])
        (document,) = embedder.embed_multi(["red car"])
    assert [r.json["task"] for r in mmembed_emulator.requests] == ["retrieval.query", "retrieval.passage"]
    np.testing.assert_allclose(query, expected_rows(text="red car", query=True), atol=1e-6)
    assert not np.allclose(query, document)  # the emulator nudges query tokens: the task reached it


def test_order_is_kept_with_mixed_texts_and_images(mmembed_emulator: Emulator) -> None:
    colours = ["red", "blue", "green"]
    photos = [png_bytes(colour_photo(c, size=(40 + 8 * i, 32))) for i, c in enumerate(colours)]
    items: list[object] = ["one", photos[0], "two words", photos[1], "three small words", photos[2], "one"]
    with jina_v4(mmembed_emulator) as embedder:
        arrays = embedder.embed_multi(items)
    assert [a.shape[0] for a in arrays] == [1, 16, 2, 16, 3, 16, 1]
    for item, array in zip(items, arrays, strict=True):
        if isinstance(item, str):
            np.testing.assert_allclose(array, expected_rows(text=item), atol=1e-6)
        else:
            np.testing.assert_allclose(array, expected_rows(photo=item), atol=1e-5)
    (request,) = mmembed_emulator.requests
    assert len(request.json["input"]) == 6  # the repeated "one" went once


def test_a_rerun_is_answered_by_the_cache_and_single_vectors_have_other_keys(
    mmembed_emulator: Emulator, tmp_path: Path
) -> None:
    photo = png_bytes(colour_photo("blue", size=(48, 48)))
    path = tmp_path / "cache.sqlite"
    with jina_v4(mmembed_emulator, cache=str(path)) as embedder:
        first = embedder.embed_multi(["the blue sea", photo])
        single = embedder.embed(["the blue sea"])  # a single vector of the same content: not the rows
        queried = embedder.embed_query_multi(["the blue sea"])  # the query task: not the documents' rows
    assert single.shape == (1, 2048) and queried[0].shape == (3, 128)
    assert len(mmembed_emulator.requests) == 3
    mmembed_emulator.clear()
    with jina_v4(mmembed_emulator, cache=str(path)) as again:  # a new process would see the same file
        second = again.embed_multi(["the blue sea", photo])
        assert again.embed(["the blue sea"]) == pytest.approx(single)
    assert mmembed_emulator.requests == []
    for a, b in zip(first, second, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_the_cache_keeps_shapes_and_reads_entries_written_before_multi_vectors(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    old = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    with closing(sqlite3.connect(path)) as conn, conn:  # an entry as earlier versions wrote it: bare float32s
        conn.execute("CREATE TABLE embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        conn.execute("INSERT INTO embeddings VALUES (?, ?)", ("old", old.tobytes()))
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    one_row = np.ones((1, 3), dtype=np.float32)
    with EmbeddingCache(path) as cache:
        cache.put_many([("rows", rows), ("one-row", one_row), ("flat", np.ones(12, dtype=np.float32))])
        got = cache.get_many(["old", "rows", "one-row", "flat"])
        with pytest.raises(ValueError, match="3-d"):
            cache.put_many([("cube", np.zeros((2, 2, 2), dtype=np.float32))])
    assert got["old"].shape == (3,) and np.array_equal(got["old"], old)
    assert got["rows"].shape == (4, 3) and np.array_equal(got["rows"], rows)
    assert got["one-row"].shape == (1, 3) and got["flat"].shape == (12,)


@pytest.mark.parametrize("fault", ["503", "429"])
def test_a_refused_request_is_retried(mmembed_emulator: Emulator, fault: str) -> None:
    mmembed_emulator.inject(fault, times=1)
    with jina_v4(mmembed_emulator, max_retries=3) as embedder:
        (rows,) = embedder.embed_multi(["a red car"])
        assert embedder.stats.retries == 1
    assert rows.shape == (3, 128)
    assert [r.status for r in mmembed_emulator.requests] == [int(fault), 200]


def test_a_model_without_multi_vectors_names_the_models_that_have_them(mmembed_emulator: Emulator) -> None:
    with Embedder("jina", model="jina-clip-v2", base_url=mmembed_emulator.url, api_key=CANARY_KEY) as embedder:
        assert embedder.multivector_dimensions is None
        with pytest.raises(ConfigurationError, match="jina-clip-v2 has no multi-vector output") as err:
            embedder.embed_multi(["a red car"])
        with pytest.raises(ConfigurationError, match="multi-vector"):
            embedder.embed_query_multi(["a red car"])
    assert "jina:jina-embeddings-v4" in str(err.value)
    assert mmembed_emulator.requests == []


def test_a_pdf_goes_in_page_by_page(mmembed_emulator: Emulator, tmp_path: Path) -> None:
    pages = [colour_photo(c, size=(120, 160)) for c in ("blue", "red")]
    pdf = tmp_path / "report.pdf"
    pages[0].save(pdf, "PDF", save_all=True, append_images=pages[1:])
    with jina_v4(mmembed_emulator) as embedder:
        with pytest.raises(InputError, match="expand") as err:
            embedder.embed_multi(["a text", pdf])
        assert err.value.index == 1
        segments = embedder.expand([pdf])
        arrays = embedder.embed_multi([s.item for s in segments])
    assert [s.metadata["page"] for s in segments] == [1, 2]
    assert [a.shape for a in arrays] == [(16, 128), (16, 128)]
    with pytest.raises(TypeError, match="list"):
        embedder.embed_multi("a text")


# -- self-hosted ColPali: vLLM's /pooling (token_embed) and Infinity's merged checkpoints ------------------------
COLPALI = {"vllm": "vidore/colpali-v1.3-hf", "infinity": "michaelfeil/colpali-v1.2-merged"}


def colpali_rows(provider: str, *, text: str | None = None, photo: bytes | None = None) -> np.ndarray:
    """The emulator's rows for one ColPali input, unit length (what the client gives back)."""
    from mmembed.testing.imagedata import decode_image

    spec = find_model(provider, COLPALI[provider])
    assert spec is not None
    image = decode_image(photo) if photo is not None else None
    rows = np.array(multivector(spec, text=text, image=image), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("provider", ["vllm", "infinity"])
def test_colpali_on_a_server_gives_rows_per_token_and_patch_in_order(provider: str) -> None:
    photos = [png_bytes(colour_photo(c, size=(64, 48))) for c in ("red", "blue")]
    items: list[object] = ["a red car", photos[0], "the sea", photos[1]]
    with Emulator(**{f"{provider}_model": COLPALI[provider]}) as emu:
        url = emu.url_for(provider)
        with Embedder(provider, base_url=url, query_prefix="Query: ") as embedder:  # the model is discovered
            arrays = embedder.embed_multi(items)
            (query,) = embedder.embed_query_multi(["red car"])
            assert embedder.multivector_dimensions == 128
            with pytest.raises(ConfigurationError, match="multi-vectors only"):
                embedder.embed(["a single vector"])  # a token-only model: nothing is sent
        sent = [r for r in emu.requests if r.method == "POST" and r.status == 200]
    assert [a.shape for a in arrays] == [(3, 128), (16, 128), (2, 128), (16, 128)]
    assert np.linalg.norm(np.vstack([*arrays, query]), axis=1) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(arrays[0], colpali_rows(provider, text="a red car"), atol=1e-5)
    np.testing.assert_allclose(arrays[3], colpali_rows(provider, photo=photos[1]), atol=1e-5)
    np.testing.assert_allclose(query, colpali_rows(provider, text="Query: red car"), atol=1e-5)  # the prefix
    bodies = [r.json for r in sent]
    if provider == "vllm":
        assert {r.path for r in sent} == {"/vllm/pooling"}
        assert all(b["task"] == "token_embed" for b in bodies)
        texts = sorted(b["input"] for b in bodies if "input" in b)  # the batches go concurrently: any order
        assert texts == [["Query: red car"], ["a red car", "the sea"]]  # one request of texts, then the query
        images = [b["messages"][0]["content"] for b in bodies if "messages" in b]  # one conversation each
        assert len(images) == 2 and all(c[0]["type"] == "image_url" for c in images)
    else:
        assert {r.path for r in sent} == {"/infinity/embeddings"}
        assert sorted(b["modality"] for b in bodies) == ["image", "text", "text"]
        assert ["Query: red car"] in [b["input"] for b in bodies]


@pytest.mark.parametrize("provider", ["vllm", "infinity"])
def test_a_busy_server_is_waited_for_and_a_clip_model_is_refused(provider: str) -> None:
    with Emulator(**{f"{provider}_model": COLPALI[provider]}) as emu:
        emu.inject("503" if provider == "vllm" else "429", times=1)
        with Embedder(provider, base_url=emu.url_for(provider), model=COLPALI[provider]) as embedder:
            (rows,) = embedder.embed_multi(["a red car"])
        assert rows.shape == (3, 128)
        assert [r.status for r in emu.requests if r.method == "POST"][:2] == [503 if provider == "vllm" else 429, 200]
    with Emulator() as emu, Embedder(provider, base_url=emu.url_for(provider)) as clip:
        with pytest.raises(ConfigurationError, match="openai/clip-vit-base-patch32 has no multi-vector") as err:
            clip.embed_multi(["a red car"])
    for name in ("jina:jina-embeddings-v4", "vllm:vidore/colpali-v1.3-hf", "infinity:michaelfeil/colpali-v1.2-merged"):
        assert name in str(err.value)
