"""text-embeddings-inference: texts on /embed, the batch cap from /info, images refused naming who can."""

from __future__ import annotations

import numpy as np
import pytest

from mmembed import Embedder
from mmembed.errors import ConfigurationError, UnsupportedKindError
from mmembed.testing import Emulator, colour_photo

MODEL = "BAAI/bge-small-en-v1.5"


def test_texts_give_one_unit_row_each_in_input_order_within_the_servers_batch_cap() -> None:
    texts = [f"text number {i}" for i in range(20)]
    with Emulator(tei_max_client_batch_size=8) as emu, Embedder("tei", base_url=emu.url_for("tei")) as embedder:
        vectors = embedder.embed(texts)
        (last,) = embedder.embed([texts[-1]])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert vectors.shape == (20, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[-1], last, atol=1e-6)
    assert sorted(len(b["inputs"]) for b in bodies[:-1]) == [4, 8, 8]  # /info said 8
    assert embedder.provider.model_names() == {"model": MODEL}


def test_a_server_that_takes_more_gets_fuller_requests_unless_batch_size_says_otherwise() -> None:
    texts = [f"text number {i}" for i in range(100)]
    with Emulator(tei_max_client_batch_size=512) as emu:
        with Embedder("tei", base_url=emu.url_for("tei")) as embedder:
            embedder.embed(texts)
        assert [len(r.json["inputs"]) for r in emu.requests if r.method == "POST"] == [100]  # /info said 512
        emu.clear()
        with Embedder("tei", base_url=emu.url_for("tei"), batch_size=40) as embedder:
            embedder.embed(texts)
        assert sorted(len(r.json["inputs"]) for r in emu.requests if r.method == "POST") == [20, 40, 40]
        emu.clear()
        with Embedder("tei", base_url=emu.url_for("tei"), model=MODEL) as embedder:  # named: no /info asked
            embedder.embed(texts)
        assert sorted(len(r.json["inputs"]) for r in emu.requests if r.method == "POST") == [4, 32, 32, 32]


def test_an_image_is_refused_naming_the_item_and_the_providers_that_can() -> None:
    with Emulator() as emu, Embedder("tei", base_url=emu.url_for("tei")) as embedder:
        with pytest.raises(UnsupportedKindError) as err:
            embedder.embed(["fine", colour_photo("red")])
    assert err.value.index == 1
    message = str(err.value)
    assert "text only" in message and "vllm" in message and "infinity" in message and "nim" in message


def test_the_query_prompt_name_is_sent_for_queries() -> None:
    with Emulator() as emu:
        with Embedder("tei", base_url=emu.url_for("tei"), query_prompt_name="query") as embedder:
            (query,) = embedder.embed_query(["red"])
            (document,) = embedder.embed(["red"])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert bodies == [{"inputs": ["red"], "prompt_name": "query"}, {"inputs": ["red"]}]
    assert not np.allclose(query, document)


def test_a_larger_dimensions_than_the_model_gives_is_refused_naming_both() -> None:
    with Emulator() as emu, Embedder("tei", base_url=emu.url_for("tei"), dimensions=1024) as embedder:
        with pytest.raises(ConfigurationError) as err:
            embedder.embed(["x"])
    assert MODEL in str(err.value) and "384" in str(err.value)
