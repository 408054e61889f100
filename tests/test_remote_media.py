"""Remote (gs://) media on Vertex: refused early with the item named, never silently answered for the wrong part."""

from __future__ import annotations

import pytest

from mmembed import Embedder, ImageSource, InputError, MediaSource, ProviderError
from mmembed.testing import Emulator


def vertex(emulator: Emulator, **options: object) -> Embedder:
    return Embedder("vertex", base_url=emulator.url, api_key="k", project_id="p", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("clip", [{"start": 60}, {"end": 30}])
def test_a_remote_clip_needs_both_ends(mmembed_emulator: Emulator, clip: dict[str, float]) -> None:
    # Without its duration a half-open clip cannot be sent: it would embed the server's default window instead.
    with pytest.raises(InputError, match="both start= and end=") as info:
        vertex(mmembed_emulator).embed(["a", MediaSource("gs://b/v.mp4", kind="video", **clip)])
    assert info.value.index == 1
    assert mmembed_emulator.requests == []


def test_a_long_remote_clip_is_sent_in_windows_of_the_api(mmembed_emulator: Emulator) -> None:
    # The API covers at most 120 s per request, so 0-300 s goes as 0-120, 120-240, 240-300. (The emulator cannot
    # see a gs:// object and takes it as 120 s long, so it refuses the second window: that refusal is the proof.)
    with pytest.raises(ProviderError, match="past the video's end"):
        vertex(mmembed_emulator, max_retries=0).embed([MediaSource("gs://b/v.mp4", kind="video", start=0, end=300)])
    configs = [r.json["instances"][0]["video"]["videoSegmentConfig"] for r in mmembed_emulator.requests]
    assert {(c["startOffsetSec"], c["endOffsetSec"]) for c in configs} <= {(0, 120), (120, 240), (240, 300)}
    assert (0, 120) in {(c["startOffsetSec"], c["endOffsetSec"]) for c in configs}


def test_a_bad_gs_image_on_gemini_names_its_item_and_the_stream_goes_on(mmembed_emulator: Emulator) -> None:
    embedder = vertex(mmembed_emulator, model="gemini-embedding-2")
    items = ["a", ImageSource("gs://bucket/photo.webp"), "b"]
    with pytest.raises(InputError, match=r"\.png or \.jpg") as info:
        embedder.embed(items)
    assert info.value.index == 1
    out = dict(embedder.embed_stream(items))
    assert isinstance(out[1], InputError) and out[0].shape == out[2].shape == (3072,)
