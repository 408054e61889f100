"""Item kinds beyond text and images: PDFs, video, audio and Interleaved — recognised, routed, fallen back, refused."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, png_bytes
from mmembed import Embedder, InputError, Interleaved, MediaLimits, MediaSource, Segment
from mmembed.inputs import AudioItem, DocumentItem, ImageItem, InterleavedItem, TextItem, VideoItem, to_item
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.media import corrupt_pdf, make_audio, make_encrypted_pdf, make_pdf, make_video

PAGES = ["An invoice for three red bicycles", "A receipt for a blue kayak", "Minutes of the green committee"]


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return make_pdf(PAGES)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory, pdf_bytes: bytes) -> Path:
    folder = tmp_path_factory.mktemp("media")
    (folder / "doc.pdf").write_bytes(pdf_bytes)
    (folder / "clip.mp4").write_bytes(make_video(12, colour=(255, 0, 0)))
    (folder / "long.mp4").write_bytes(make_video(40, colour=[(0, (255, 0, 0)), (16, (0, 255, 0)), (32, (0, 0, 255))]))
    (folder / "tone.wav").write_bytes(make_audio(3))
    (folder / "red.jpg").write_bytes(jpeg_bytes(colour_photo("red", size=(640, 480))))
    return folder


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# -- recognised from content -----------------------------------------------------------------------
def test_paths_and_bytes_are_recognised_from_their_content(media_dir: Path, tmp_path: Path) -> None:
    assert isinstance(to_item(media_dir / "doc.pdf"), DocumentItem)
    video = to_item(media_dir / "clip.mp4")
    assert isinstance(video, VideoItem) and video.media_type == "video/mp4"
    audio = to_item(media_dir / "tone.wav")
    assert isinstance(audio, AudioItem) and audio.media_type == "audio/wav"
    assert isinstance(to_item(media_dir / "red.jpg"), ImageItem)
    disguised = tmp_path / "photo.jpg"  # the name says image, the content says PDF
    disguised.write_bytes((media_dir / "doc.pdf").read_bytes())
    assert isinstance(to_item(disguised), DocumentItem)
    assert isinstance(to_item((media_dir / "clip.mp4").read_bytes()), VideoItem)
    assert isinstance(to_item(make_audio(1, format="mp3")), AudioItem)
    assert to_item(make_audio(1, format="m4a")).kind == "audio"  # ISO-BMFF with an M4A brand is audio
    assert to_item(make_video(1, container="webm")).kind == "video"
    assert isinstance(to_item(png_bytes(colour_photo("red", size=(8, 8)))), ImageItem)
    assert isinstance(to_item(str(media_dir / "doc.pdf")), TextItem)  # a str stays text


def test_media_sources_name_remote_media_explicitly() -> None:
    video = to_item(MediaSource("gs://bucket/talk.mp4", start=0, end=30))
    assert isinstance(video, VideoItem) and video.gcs_uri == "gs://bucket/talk.mp4"
    assert (video.start, video.end) == (0, 30)
    doc = to_item(MediaSource("https://example.com/report", kind="pdf", pages=(2, 3)))
    assert isinstance(doc, DocumentItem) and doc.url and doc.pages == (2, 3)
    assert to_item(MediaSource("https://example.com/a.mp3")).kind == "audio"
    with pytest.raises(InputError, match="kind="):
        to_item(MediaSource("https://example.com/blob"))
    with pytest.raises(InputError, match="pages"):
        MediaSource("a.pdf", pages=(3, 1))
    with pytest.raises(InputError, match="videos only"):
        to_item(MediaSource("gs://b/a.pdf", start=1))


def test_content_keys_cover_content_and_range(media_dir: Path, pdf_bytes: bytes) -> None:
    whole = to_item(media_dir / "doc.pdf")
    page = to_item(MediaSource(str(media_dir / "doc.pdf"), pages=(2, 2)))
    assert whole.content_key() == to_item(pdf_bytes).content_key()
    assert whole.content_key() != page.content_key()
    both = to_item(Interleaved(["a", media_dir / "red.jpg"]))
    weighted = to_item(Interleaved(["a", media_dir / "red.jpg"], weights=[2, 1]))
    assert isinstance(both, InterleavedItem) and both.content_key() != weighted.content_key()


# -- Interleaved ------------------------------------------------------------------------------------
def test_interleaved_on_jina_is_the_mean_of_its_parts(
    media_dir: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("jina")
    text, image = embedder.embed(["a red bicycle", media_dir / "red.jpg"])
    mmembed_emulator.clear()
    (vector,) = embedder.embed([Interleaved(["a red bicycle", media_dir / "red.jpg"])])
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    assert float(vector @ unit(text + image)) > 0.98
    (request,) = mmembed_emulator.requests  # both parts in one request
    assert [sorted(i) for i in request.json["input"]] == [["text"], ["image"]]
    (weighted,) = embedder.embed([Interleaved(["a red bicycle", media_dir / "red.jpg"], weights=[3, 1])])
    assert float(weighted @ unit(3 * text + image)) > 0.999


def test_interleaved_on_vertex_shares_one_instance(
    media_dir: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("vertex")
    text, image = embedder.embed(["a red bicycle", media_dir / "red.jpg"])
    mmembed_emulator.clear()
    (vector,) = embedder.embed([Interleaved([media_dir / "red.jpg", "a red bicycle"])])
    (request,) = mmembed_emulator.requests
    assert sorted(request.json["instances"][0]) == ["image", "text"]
    assert float(vector @ unit(text + image)) > 0.999
    mmembed_emulator.clear()
    embedder.embed([Interleaved(["a", "b", media_dir / "red.jpg"])])  # not one text + one image: the mean
    assert len(mmembed_emulator.requests) == 2


# -- PDFs on text+image models ----------------------------------------------------------------------
def test_a_pdf_on_nomic_is_its_pages_rendered_and_their_text(
    media_dir: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("nomic")
    vectors = embedder.embed(["a note", media_dir / "doc.pdf", "another"])
    assert vectors.shape == (3, 768)
    texts = [t for r in mmembed_emulator.requests if r.path.endswith("/text") for t in r.json["texts"]]
    assert texts == ["a note", "another", *PAGES] or sorted(texts) == sorted(["a note", "another", *PAGES])
    images = [f for r in mmembed_emulator.requests if r.path.endswith("/image") for f in r.files if f[0] == "images"]
    assert len(images) == 3
    sizes = [Image.open(io.BytesIO(f[3])).size for f in images]
    side = embedder.provider.image_spec().min_side
    assert all(min(s) == side for s in sizes)  # rendered at the model's side, not at 300 dpi
    pages = embedder.embed([*PAGES, *(Path(media_dir / "doc.pdf"),)])
    assert float(pages[3] @ unit(pages[0] + pages[1] + pages[2])) > 0.5


def test_expand_gives_one_segment_per_page_and_passage(media_dir: Path, embedder_for: Callable[..., Embedder]) -> None:
    embedder = embedder_for("jina")
    segments = embedder.expand(["a note", media_dir / "doc.pdf"])
    assert [s.parent for s in segments] == [0] + [1] * 6
    assert [(s.modality, s.metadata) for s in segments[1:3]] == [
        ("pdf", {"page": 1}),
        ("text", {"page": 1, "passage": 0}),
    ]
    assert all(isinstance(s, Segment) for s in segments)
    assert isinstance(segments[2].item, TextItem) and segments[2].item.text == PAGES[0]
    vectors = embedder.embed([s.item for s in segments])
    assert vectors.shape == (7, 1024)
    v4 = embedder_for("jina", model="jina-embeddings-v4").expand([media_dir / "doc.pdf"])
    assert [(s.modality, s.metadata) for s in v4] == [("pdf", {"page": n}) for n in (1, 2, 3)]  # page images only


# -- video and audio ---------------------------------------------------------------------------------
def test_video_on_vertex_goes_in_segments_with_video_segment_config(
    media_dir: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("vertex")
    segments = embedder.expand([media_dir / "long.mp4"])
    spans = [{"start": 0, "end": 16}, {"start": 16, "end": 32}, {"start": 32, "end": 40}]
    assert [s.metadata for s in segments] == spans
    vectors = embedder.embed([s.item for s in segments] + ["red", "green", "blue"])
    assert vectors.shape == (6, 1408)
    configs = [r.json["instances"][0]["video"]["videoSegmentConfig"] for r in mmembed_emulator.requests
               if "video" in r.json["instances"][0]]
    # the three segments share one request: one interval each, matched back by start offset
    assert configs == [{"startOffsetSec": 0, "endOffsetSec": 40, "intervalSec": 16}]
    similarities = vectors[:3] @ vectors[3:].T  # each segment nearest its own colour
    assert list(similarities.argmax(axis=1)) == [0, 1, 2]
    (whole,) = embedder.embed([media_dir / "clip.mp4"])  # embed(): the whole clip, one vector
    assert whole.shape == (1408,)
    config = mmembed_emulator.requests[-1].json["instances"][0]["video"]["videoSegmentConfig"]
    assert config == {"startOffsetSec": 0, "endOffsetSec": 12, "intervalSec": 12}


def test_segments_not_in_one_window_or_of_other_files_go_apart(
    media_dir: Path, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("vertex", media_limits=MediaLimits(video_interval=8))
    segments = embedder.expand([media_dir / "long.mp4", media_dir / "clip.mp4"])
    tail = [{"start": 32, "end": 40}, {"start": 0, "end": 8}, {"start": 8, "end": 12}]
    assert [s.metadata for s in segments][-3:] == tail
    vectors = embedder.embed([s.item for s in segments])
    configs = sorted(
        (r.json["instances"][0]["video"]["videoSegmentConfig"] for r in mmembed_emulator.requests),
        key=lambda c: (c["endOffsetSec"] - c["startOffsetSec"], c["startOffsetSec"]),
    )
    assert configs == [
        {"startOffsetSec": 0, "endOffsetSec": 12, "intervalSec": 8},  # clip.mp4: 0-8 and 8-12 (4 s)
        {"startOffsetSec": 0, "endOffsetSec": 40, "intervalSec": 8},  # long.mp4: five segments, one request
    ]
    singles = embedder.embed([s.item for s in segments[:2]] + [segments[-1].item])  # alone, then matched again
    assert float(singles[0] @ vectors[0]) > 0.999 and float(singles[2] @ vectors[-1]) > 0.999


def test_vertex_refuses_video_at_reduced_dimensions(media_dir: Path, embedder_for: Callable[..., Embedder]) -> None:
    with pytest.raises(InputError, match="1408") as info:
        embedder_for("vertex", dimensions=512).embed(["a", media_dir / "clip.mp4"])
    assert info.value.index == 1


@pytest.mark.parametrize("provider", ["jina", "nomic"])
def test_video_and_audio_on_image_text_models_are_refused_naming_who_can(
    provider: str, media_dir: Path, embedder_for: Callable[..., Embedder]
) -> None:
    embedder = embedder_for(provider)
    with pytest.raises(InputError, match=r"cannot embed video.*vertex \(multimodalembedding@001") as info:
        embedder.embed(["a note", media_dir / "clip.mp4"])
    assert (info.value.index == 1 and "clip.mp4" in str(info.value)) or info.value.index == 1
    with pytest.raises(InputError, match="cannot embed audio") as info:
        embedder.expand([media_dir / "tone.wav"])
    assert info.value.index == 0


# -- safety -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (make_encrypted_pdf(), "encrypted"),
        (make_encrypted_pdf(user_password=""), "encrypted"),
        (corrupt_pdf(), "not a readable PDF"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64, "not a readable video"),
    ],
)
def test_bad_documents_and_media_are_named_and_nothing_crashes(
    data: bytes, message: str, embedder_for: Callable[..., Embedder]
) -> None:
    embedder = embedder_for("vertex")
    with pytest.raises(InputError, match=message) as info:
        embedder.embed(["fine", data])
    assert info.value.index == 1


def test_broken_audio_is_an_input_error_not_a_crash() -> None:
    from mmembed.mediainfo import probe

    with pytest.raises(InputError, match="not a readable video or audio"):
        probe(b"RIFF\x24\x00\x00\x00WAVEjunkjunk")
    assert probe(make_audio(3)).duration == pytest.approx(3.0, abs=0.05)


def test_caps_on_pages_bytes_and_length(media_dir: Path, embedder_for: Callable[..., Embedder]) -> None:
    pdf = media_dir / "doc.pdf"
    with pytest.raises(InputError, match="3 pages, over the limit of 2"):
        embedder_for("nomic", media_limits=MediaLimits(max_pdf_pages=2)).embed([pdf])
    with pytest.raises(InputError, match="over the 100-byte limit"):
        embedder_for("nomic", media_limits=MediaLimits(max_pdf_bytes=100)).embed([pdf])
    with pytest.raises(InputError, match="over the 1,000-byte limit"):
        embedder_for("vertex", media_limits=MediaLimits(max_media_bytes=1000)).embed([media_dir / "clip.mp4"])


def test_a_poster_page_is_rendered_within_the_pixel_cap(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    strip = make_pdf(["a very long strip"], size=(200, 14400))  # 2.8 in x 200 in
    embedder_for("jina", media_limits=MediaLimits(render_max_pixels=1_000_000)).embed([strip])
    (request,) = mmembed_emulator.requests
    image = next(i["image"] for i in request.json["input"] if "image" in i)
    width, height = Image.open(io.BytesIO(base64.b64decode(image))).size
    assert width * height <= 1_000_000 and width < 512


def test_progress_counts_caller_items(media_dir: Path, embedder_for: Callable[..., Embedder]) -> None:
    ticks: list[int] = []
    embedder_for("jina").embed(["a", media_dir / "doc.pdf", Interleaved(["b", "c"])], progress=ticks.append)
    assert sum(ticks) == 3


def test_the_documents_and_video_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    example = Path(__file__).parent.parent / "examples" / "documents_and_video.py"
    runpy.run_path(str(example), run_name="example")["main"]("vertex")
    out = capsys.readouterr().out
    assert "talk.mp4: video {'start': 16.0, 'end': 32.0}" in out and "tone.wav: skipped" in out
