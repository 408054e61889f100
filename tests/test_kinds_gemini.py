"""gemini-embedding-2's native kinds (both backends): PDFs of at most 6 pages, video, audio, interleaved parts."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import jpeg_bytes
from mmembed import Embedder, InputError, Interleaved, MediaSource
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.media import make_audio, make_pdf, make_video, pdf_info

PAGES = ["An invoice for three red bicycles", "A receipt for a blue kayak", "Minutes of the green committee"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gemini-media")
    (folder / "doc.pdf").write_bytes(make_pdf(PAGES))
    (folder / "long.pdf").write_bytes(make_pdf([f"page {n}" for n in range(1, 15)]))
    (folder / "clip.mp4").write_bytes(make_video(12))
    (folder / "loud.mp4").write_bytes(make_video(90, audio=True, fps=1))
    (folder / "clip.webm").write_bytes(make_video(2, container="webm"))
    (folder / "tone.wav").write_bytes(make_audio(3))
    (folder / "song.mp3").write_bytes(make_audio(2, format="mp3"))
    (folder / "red.jpg").write_bytes(jpeg_bytes(colour_photo("red", size=(640, 480))))
    return folder


@pytest.fixture(params=["gemini", "vertex"])
def gemini_for(request: pytest.FixtureRequest, embedder_for: Callable[..., Embedder]) -> Callable[..., Embedder]:
    """gemini-embedding-2 on the Gemini API, and on Vertex (:embedContent)."""

    def make(**options: object) -> Embedder:
        if request.param == "vertex":
            return embedder_for("vertex", model="gemini-embedding-2", **options)
        return embedder_for("gemini", **options)

    return make


def contents(emu: Emulator) -> list[dict[str, object]]:
    """Every content sent, whichever backend (batchEmbedContents requests or one embedContent body)."""
    out = []
    for r in emu.requests:
        body = r.json or {}
        out += [q["content"] for q in body.get("requests", [])] + ([body["content"]] if "content" in body else [])
    return out


def test_interleaved_is_one_content_of_a_text_and_an_inline_part(
    folder: Path, gemini_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    (vector,) = gemini_for().embed([Interleaved(["a red bicycle", folder / "red.jpg"])])
    (content,) = contents(mmembed_emulator)
    parts = content["parts"]
    assert isinstance(parts, list) and len(parts) == 2
    assert "text" in parts[0] and parts[0]["text"].endswith("a red bicycle")
    assert parts[1]["inlineData"]["mimeType"] == "image/jpeg"
    assert all(r.status == 200 for r in mmembed_emulator.requests)
    assert vector.shape == (3072,)


def test_pdf_video_and_audio_go_as_inline_parts(
    folder: Path, gemini_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    items = [folder / "doc.pdf", folder / "clip.mp4", folder / "tone.wav", folder / "song.mp3", "a note"]
    vectors = gemini_for().embed(items)
    assert vectors.shape == (5, 3072)
    assert all(r.status == 200 for r in mmembed_emulator.requests)
    sent = [p for c in contents(mmembed_emulator) for p in c["parts"]]
    types = sorted(p["inlineData"]["mimeType"] for p in sent if "inlineData" in p)
    assert types == ["application/pdf", "audio/mpeg", "audio/wav", "video/mp4"]


def test_a_long_pdf_goes_in_chunks_of_six_pages(
    folder: Path, gemini_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    (vector,) = gemini_for().embed([folder / "long.pdf"])
    pdfs = [base64.b64decode(p["inlineData"]["data"]) for c in contents(mmembed_emulator) for p in c["parts"]]
    assert sorted(pdf_info(d).page_count for d in pdfs) == [2, 6, 6]
    assert all(r.status == 200 for r in mmembed_emulator.requests)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_expand_gives_one_sub_pdf_per_page_and_search_finds_the_invoice(
    folder: Path, gemini_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = gemini_for()
    segments = embedder.expand([folder / "doc.pdf", folder / "clip.mp4", folder / "tone.wav"])
    assert [(s.modality, s.metadata) for s in segments] == [
        ("pdf", {"page": 1}),
        ("pdf", {"page": 2}),
        ("pdf", {"page": 3}),
        ("video", {"start": 0.0, "end": 12.0}),
        ("audio", {"start": 0.0, "end": 3.0}),
    ]
    vectors = embedder.embed([s.item for s in segments[:3]])
    (query,) = embedder.embed_query(["invoice"])
    assert int(np.argmax(vectors @ query)) == 0
    sent = [base64.b64decode(p["inlineData"]["data"]) for c in contents(mmembed_emulator) for p in c["parts"]
            if "inlineData" in p]
    assert sorted(pdf_info(d).texts for d in sent) == sorted((t,) for t in PAGES)


def test_over_long_media_and_other_formats_are_refused_by_name(
    folder: Path, gemini_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = gemini_for()
    with pytest.raises(InputError, match=r"90\.0 s long.*at most 80 s of video with a sound track") as info:
        embedder.embed([folder / "loud.mp4", "fine"])
    assert info.value.index == 0
    with pytest.raises(InputError, match="not video/webm"):
        embedder.embed([folder / "clip.webm"])
    with pytest.raises(InputError, match="whole video files only"):
        embedder.embed([MediaSource(str(folder / "clip.mp4"), start=0, end=4)])
    assert mmembed_emulator.requests == []  # nothing was sent for any of them


def test_gs_media_go_to_vertex_as_file_data(
    embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    sources = [MediaSource("gs://bucket/report.pdf"), MediaSource("gs://bucket/talk.mov", kind="video")]
    embedder_for("vertex", model="gemini-embedding-2").embed(sources)
    files = sorted((p["fileData"]["mimeType"], p["fileData"]["fileUri"]) for c in contents(mmembed_emulator)
                   for p in c["parts"])
    assert files == [("application/pdf", "gs://bucket/report.pdf"), ("video/quicktime", "gs://bucket/talk.mov")]


def test_text_only_gemini_model_refuses_media_naming_the_models_that_can(
    folder: Path, embedder_for: Callable[..., Embedder]
) -> None:
    with pytest.raises(InputError, match=r"cannot embed PDF.*gemini \(gemini-embedding-2"):
        embedder_for("gemini", model="gemini-embedding-001").embed([folder / "doc.pdf"])
