"""vLLM: texts in ``input``, images as chat ``messages``, discovery, model types, errors in both shapes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmembed import Embedder, Interleaved
from mmembed.errors import ConfigurationError, ProviderError
from mmembed.testing import Emulator, colour_photo

CLIP = "openai/clip-vit-base-patch32"
VLM = "Qwen/Qwen3-VL-Embedding-2B"


def photo(colour: str, size: tuple[int, int] = (640, 480)) -> bytes:
    buf = io.BytesIO()
    colour_photo(colour, size=size).save(buf, "JPEG")
    return buf.getvalue()


def test_texts_and_images_give_one_unit_row_each_in_input_order() -> None:
    with Emulator() as emu:
        url = emu.url_for("vllm")
        with Embedder("vllm", base_url=url, model=CLIP) as embedder:
            vectors = embedder.embed(["a red car", photo("red"), "the blue sea", photo("blue")])
            alone = [embedder.embed([item])[0] for item in ("the blue sea", photo("blue"))]
        posts = [r for r in emu.requests if r.method == "POST"]
    assert vectors.shape == (4, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[2], alone[0], atol=1e-6)
    np.testing.assert_allclose(vectors[3], alone[1], atol=1e-6)
    texts = [r.json for r in posts if "input" in r.json]
    assert texts[0] == {"model": CLIP, "input": ["a red car", "the blue sea"], "encoding_format": "float"}
    images = [r.json["messages"] for r in posts if "messages" in r.json]
    assert len(images) == 3  # one conversation per request (what every vLLM takes)
    (turn,) = images[0]
    assert turn["role"] == "user"
    (part,) = turn["content"]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    shrunk = Image.open(io.BytesIO(__import__("base64").b64decode(part["image_url"]["url"].split(",", 1)[1])))
    assert min(shrunk.size) == 224  # CLIP's input side, not the 640x480 original


def test_the_served_model_is_discovered_once_when_none_is_named() -> None:
    with Emulator() as emu:
        url = emu.url_for("vllm")
        embedder = Embedder("vllm", base_url=url)
        assert not emu.requests  # building sends nothing
        embedder.embed(["one"])
        embedder.embed(["two"])
        assert embedder.provider.model_names() == {"model": CLIP}
        assert embedder.dimensions == 512
        assert [r.path for r in emu.requests].count("/vllm/v1/models") == 1
        embedder.close()
        emu.clear()
        with Embedder("vllm", base_url=url, model=VLM, max_retries=0) as wrong, pytest.raises(ProviderError) as err:
            wrong.embed(["x"])  # a named model is taken on trust: no discovery, the server refuses it
        assert [r.method for r in emu.requests] == ["POST"]
    assert err.value.status == 404 and VLM in str(err.value)


def test_base_url_is_required_and_a_v1_suffix_is_accepted() -> None:
    with pytest.raises(ConfigurationError, match="base_url is required"):
        Embedder("vllm")
    with Emulator() as emu, Embedder("vllm", base_url=emu.url_for("vllm") + "/v1") as embedder:
        assert embedder.embed(["x"]).shape == (1, 512)


def test_a_key_is_optional_and_sent_as_bearer_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(vllm_api_key="s3cret-token-123") as emu:
        url = emu.url_for("vllm")
        with Embedder("vllm", base_url=url, model=CLIP, max_retries=0) as anonymous:
            with pytest.raises(ProviderError) as err:
                anonymous.embed(["x"])
            assert err.value.status == 401
        monkeypatch.setenv("VLLM_API_KEY", "s3cret-token-123")
        with Embedder("vllm", base_url=url) as keyed:
            assert keyed.embed(["x"]).shape == (1, 512)
            assert "s3cret" not in repr(keyed) and "s3cret" not in str(keyed.config())


def test_a_vlm_embedder_takes_text_and_image_in_one_conversation() -> None:
    with Emulator(vllm_model=VLM) as emu, Embedder("vllm", base_url=emu.url_for("vllm")) as embedder:
        (vector,) = embedder.embed([Interleaved(["a chart of sales", photo("green")])])
        body = [r.json for r in emu.requests if r.method == "POST"][-1]
    (turn,) = body["messages"]
    assert [p["type"] for p in turn["content"]] == ["text", "image_url"]  # one conversation, one vector
    assert vector.shape == (2048,)


def test_a_clip_model_gets_the_mean_of_an_interleaved_items_parts() -> None:
    with Emulator() as emu, Embedder("vllm", base_url=emu.url_for("vllm")) as embedder:
        (mixed,) = embedder.embed([Interleaved(["a red car", photo("red")])])
        text, image = embedder.embed(["a red car", photo("red")])
    mean = (text + image) / np.linalg.norm(text + image)
    np.testing.assert_allclose(mixed, mean, atol=1e-5)


def test_batched_conversations_when_the_server_takes_them() -> None:
    with Emulator(vllm_batched_chat=True) as emu:
        with Embedder("vllm", base_url=emu.url_for("vllm"), image_batch=True) as embedder:
            vectors = embedder.embed([photo("red"), photo("blue"), photo("green")])
        bodies = [r.json for r in emu.requests if r.method == "POST"]
    assert vectors.shape == (3, 512)
    assert len(bodies) == 1 and len(bodies[0]["messages"]) == 3


def test_query_prefix_goes_before_query_texts_only() -> None:
    with Emulator() as emu:
        with Embedder("vllm", base_url=emu.url_for("vllm"), query_prefix="query: ") as embedder:
            embedder.embed_query(["red"])
            embedder.embed(["red"])
        inputs = [r.json["input"] for r in emu.requests if r.method == "POST"]
    assert inputs == [["query: red"], ["red"]]


@pytest.mark.parametrize("flat", [False, True])
def test_errors_in_both_shapes_name_the_servers_message(flat: bool) -> None:
    with Emulator(vllm_model=CLIP, vllm_flat_errors=flat) as emu:
        with Embedder("vllm", base_url=emu.url_for("vllm"), model_type="vlm") as embedder:
            with pytest.raises(ProviderError, match="CLIP accepts text-only or image-only inputs") as err:
                embedder.embed([Interleaved(["a red car", photo("red")])])
    assert err.value.status == 400


def test_model_type_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="model_type"):
        Embedder("vllm", base_url="http://localhost:8000", model_type="colbert")


def test_a_chroma_function_freezes_the_served_model_in_its_config() -> None:
    from mmembed.chroma import function_class

    with Emulator() as emu:
        ef = function_class("vllm")(base_url=emu.url_for("vllm"))
        config = ef.get_config()
        rebuilt = type(ef).build_from_config(config)
        assert config["model"] == CLIP and config["dimensions"] == 512
        assert rebuilt.get_config() == config
        emu.clear()
        rebuilt(["a red car"])
        assert [r.method for r in emu.requests] == ["POST"]  # the model is named now: nothing to ask


def test_the_size_of_a_model_the_server_does_not_tell_is_probed() -> None:
    with Emulator() as emu, Embedder("vllm", base_url=emu.url_for("vllm"), model=CLIP) as embedder:
        family = embedder.provider.family
        family.native_dimensions = family.dimensions = None  # as for a model the table does not know
        embedder.provider.discover(probe=True)
        (probe,) = [r.json for r in emu.requests if r.method == "POST"]
    assert probe["input"] == ["dimension probe"]
    assert embedder.dimensions == 512
