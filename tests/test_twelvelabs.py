"""Twelve Labs Marengo 3.0 against the emulator: what was sent, and what came back."""

from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np
import pytest

from conftest import CANARY_KEY
from mmembed import AuthenticationError, ConfigurationError, Embedder, InputError, Interleaved
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.media import make_audio, make_video

PATH = "/v1.3/embed-v2"


def test_every_kind_in_one_call(embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator) -> None:
    photo = colour_photo("red", size=(256, 192))
    items = ["a red car", photo, Interleaved(["a red car", photo]), make_audio(2.0), make_video(2.0),
             colour_photo("blue", size=(200, 200))]
    vectors = embedder_for("twelvelabs").embed(items)
    assert vectors.shape == (6, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    requests = mmembed_emulator.requests
    assert len(requests) == 6 and all(r.status == 200 and r.path == PATH for r in requests)
    assert all(r.headers["x-api-key"] == CANARY_KEY and "authorization" not in r.headers for r in requests)
    by_type = {r.json["input_type"]: r.json for r in requests}
    assert sorted(by_type) == ["audio", "image", "text", "text_image", "video"]
    assert all(body["model_name"] == "marengo3.0" and set(body) == {"input_type", "model_name", kind}
               for kind, body in by_type.items())
    assert by_type["text"]["text"] == {"input_text": "a red car"}
    assert set(by_type["text_image"]["text_image"]) == {"input_text", "media_source"}
    video = by_type["video"]["video"]
    assert video["embedding_scope"] == ["asset"] and video["embedding_type"] == ["fused_embedding"]
    assert base64.b64decode(by_type["audio"]["audio"]["media_source"]["base64_string"]) == make_audio(2.0)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[5])
    assert 0.6 < float(vectors[2] @ vectors[0]) < 0.999


def test_long_media_go_through_the_tasks_api(
    mmembed_emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = mmembed_emulator_factory(twelvelabs_task_polls=2)
    embedder = Embedder("twelvelabs", base_url=emulator.url, api_key=CANARY_KEY, sync_media_bytes=1000,
                        task_poll_seconds=0.01)
    vectors = embedder.embed(["sync text", make_video(2.0)])
    assert vectors.shape == (2, 512)
    calls = [(r.method, r.path, r.status) for r in emulator.requests if r.path != PATH]
    assert calls[0][:2] == ("POST", f"{PATH}/tasks") and [c[0] for c in calls] == ["POST", "GET", "GET", "GET"]
    assert calls[-1][1].startswith(f"{PATH}/tasks/") and all(c[2] == 200 for c in calls)


def test_expand_gives_video_segments_with_start_and_end(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    from mmembed.mediainfo import MediaLimits

    embedder = embedder_for("twelvelabs", media_limits=MediaLimits(video_interval=4.0))
    segments = embedder.expand([make_video(10.0)])
    assert [s.metadata for s in segments] == [{"start": 0.0, "end": 4.0}, {"start": 4.0, "end": 10.0}]
    vectors = embedder.embed([s.item for s in segments])
    assert vectors.shape == (2, 512)
    sent = sorted((r.json["video"]["start_sec"], r.json["video"]["end_sec"]) for r in mmembed_emulator.requests)
    assert sent == [(0.0, 4.0), (4.0, 10.0)]


def test_queries_and_errors(mmembed_emulator_factory: Callable[..., Emulator],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = mmembed_emulator_factory(api_keys=["good-key-0123456789"])
    with pytest.raises(AuthenticationError) as auth:
        Embedder("twelvelabs", base_url=emulator.url, api_key=CANARY_KEY).embed(["red"])
    assert auth.value.status == 401 and "api_key_invalid" in str(auth.value) and CANARY_KEY not in str(auth.value)
    good = Embedder("twelvelabs", base_url=emulator.url, api_key="good-key-0123456789")
    assert good.embed_query(["something red"]).shape == (1, 512)
    assert good.embed([colour_photo("red", size=(64, 64))]).shape == (1, 512)  # enlarged to the 128-px minimum
    assert min(__import__("PIL.Image").Image.open(__import__("io").BytesIO(base64.b64decode(
        emulator.requests[-1].json["image"]["media_source"]["base64_string"]))).size) == 128
    with pytest.raises(InputError) as err:  # the API refuses a text over 500 tokens: that item is named
        good.embed(["fine", " ".join(["word"] * 600)])
    assert err.value.index == 1 and "parameter_invalid" in str(err.value)
    monkeypatch.delenv("TWELVE_LABS_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="TWELVE_LABS_API_KEY"):
        Embedder("twelvelabs")
    monkeypatch.setenv("TWELVE_LABS_API_KEY", "env-key-0123456789")
    embedder = Embedder("twelvelabs")
    assert embedder.provider.api_key_env_var == "TWELVE_LABS_API_KEY" and "env-key" not in repr(embedder)


def test_long_audio_goes_in_windows_by_start_and_end(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    vectors = embedder_for("twelvelabs").embed([make_audio(130.0)])
    assert vectors.shape == (1, 512)
    spans = sorted((r.json["audio"]["start_sec"], r.json["audio"]["end_sec"]) for r in mmembed_emulator.requests)
    assert spans == [(0.0, 120.0), (120.0, 130.0)]  # MediaLimits.video_window, averaged by length
