"""The acceptance of issue 12 through the CLI: a folder of a PDF, a video, an audio file, photos and notes."""

from __future__ import annotations

import re
from pathlib import Path

import chromadb
import pytest

from mmembed.cli import main
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.media import make_audio, make_pdf, make_video

PAGES = [
    "Invoice number 2041 for three red bicycles, payable within thirty days.",
    "A receipt for a blue kayak and two paddles.",
    "Minutes of the green committee on the new park.",
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "report.pdf").write_bytes(make_pdf(PAGES))
    (root / "clip.mp4").write_bytes(make_video(12, colour=(255, 0, 0)))
    (root / "tone.wav").write_bytes(make_audio(3))
    colour_photo("red", size=(800, 600)).save(root / "red.jpg", quality=88)
    colour_photo("blue", size=(800, 600), seed=1).save(root / "blue.jpg", quality=88)
    (root / "banana.txt").write_text("A banana is a long curved fruit with soft sweet flesh.\n")
    (root / "sea.md").write_text("# Sailing\n\nNotes about sailing across the wide sea at dawn.\n")
    return root


def run(folder: Path, tmp_path: Path, emu: Emulator, provider: str, *extra: str) -> int:
    return main(["ingest", str(folder), "--provider", provider, "-q", *store(tmp_path, emu), *extra])


def store(tmp_path: Path, emu: Emulator) -> list[str]:
    return ["--collection", "corpus", "--db", str(tmp_path / "db"), "--base-url", emu.url]


def records(tmp_path: Path) -> list[dict[str, object]]:
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    try:
        got = client.get_collection("corpus").get(include=["metadatas"])
        return [dict(m or {}) for m in got["metadatas"] or []]
    finally:
        client.close()


def test_gemini_one_record_per_page_video_audio_and_search_finds_the_invoice_page(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    assert run(folder, tmp_path, mmembed_emulator, "gemini") == 0
    out, err = capsys.readouterr()
    assert "9 records added" in out and err == ""  # 3 pages, the video, the audio, 2 photos, 2 notes
    assert all(r.status == 200 for r in mmembed_emulator.requests)  # no request refused
    metas = records(tmp_path)
    by_modality = sorted(str(m["modality"]) for m in metas)
    assert by_modality == ["audio", "image", "image", "pdf", "pdf", "pdf", "text", "text", "video"]
    assert sorted(m["page"] for m in metas if m["modality"] == "pdf") == [1, 2, 3]
    (video,) = [m for m in metas if str(m["source"]).endswith("clip.mp4")]
    assert (video["start"], video["end"]) == (0, 12)
    assert main(["search", "invoice", "-n", "3", *store(tmp_path, mmembed_emulator)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "report.pdf" in lines[1] and "(p. 1)" in lines[1], lines


def test_vertex_video_becomes_segment_records_with_video_segment_config(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "test-key")
    (folder / "long.mp4").write_bytes(make_video(40, fps=1))
    status = run(folder, tmp_path, mmembed_emulator, "vertex", "--project-id", "test-project")
    _, err = capsys.readouterr()
    assert status == 0 and "skipped: " in err and "tone.wav" in err and "cannot embed audio" in err
    metas = records(tmp_path)
    videos = sorted(
        (str(m["source"]).rsplit("/", 1)[-1], m["start"], m["end"]) for m in metas if m["modality"] == "video"
    )
    assert videos == [("clip.mp4", 0, 12), ("long.mp4", 0, 16), ("long.mp4", 16, 32), ("long.mp4", 32, 40)]
    configs = [r.json["instances"][0]["video"]["videoSegmentConfig"] for r in mmembed_emulator.requests
               if "video" in r.json["instances"][0]]
    assert sorted(configs, key=lambda c: c["endOffsetSec"]) == [  # a video's segments share one request
        {"startOffsetSec": 0, "endOffsetSec": 12, "intervalSec": 12},
        {"startOffsetSec": 0, "endOffsetSec": 40, "intervalSec": 16},
    ]
    pages = [m for m in metas if m["modality"] == "pdf"]
    assert sorted(m["page"] for m in pages) == [1, 2, 3]  # page images, beside the pages' text passages
    assert sorted(m["page"] for m in metas if m["modality"] == "text" and "page" in m) == [1, 2, 3]
    assert main(["search", "red", "-n", "10", *store(tmp_path, mmembed_emulator)]) == 0
    assert re.search(r"clip\.mp4  \(0:00-0:12\)|long\.mp4  \(0:\d\d-0:\d\d\)", capsys.readouterr().out)


def test_jina_clip_gets_the_pdf_as_pages_and_names_video_and_audio_as_skipped(
    folder: Path, tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JINA_API_KEY", "test-key")
    assert run(folder, tmp_path, mmembed_emulator, "jina") == 0
    out, err = capsys.readouterr()
    assert "2 skipped" in out
    assert "skipped: " in err and "clip.mp4" in err and "tone.wav" in err
    metas = records(tmp_path)
    from_pdf = [m for m in metas if str(m["source"]).endswith("report.pdf")]
    assert len(from_pdf) >= 3
    assert {m["modality"] for m in from_pdf} == {"pdf", "text"}
    html = tmp_path / "hits.html"
    assert main(["search", "invoice", "-n", "4", "--html", str(html), *store(tmp_path, mmembed_emulator)]) == 0
    assert 'alt="page 1"' in html.read_text()  # a thumbnail of the page
    before = len(mmembed_emulator.requests)
    assert run(folder, tmp_path, mmembed_emulator, "jina") == 0  # a rerun sends nothing
    assert len(mmembed_emulator.requests) == before
