"""The sample media generators and the emulator's readers: what they make reads back as what was asked for."""

from __future__ import annotations

import doctest
import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("av")

import pypdfium2

from mmembed.media_types import sniff
from mmembed.testing import media
from mmembed.testing.media import (
    MediaError,
    audio_info,
    corrupt_pdf,
    make_audio,
    make_encrypted_pdf,
    make_pdf,
    make_video,
    pdf_info,
    pdf_page_image,
    video_colour,
    video_info,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SPANS = [(0, RED), (4, GREEN), (8, BLUE)]


def close(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 8) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def timed(make: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = make()
    return result, time.perf_counter() - start


@pytest.mark.parametrize("name", ["mmembed.media_types", "mmembed.testing.media", "mmembed._extras"])
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- PDF ----------------------------------------------------------------------------------------------------

PAGES = [
    "Invoice 2026-113\nTotal: 120.00 EUR (paid) \\ thank you",
    "Caf\u00e9 receipt, \u20ac4.50",
    "",
]


def test_pdf_text_round_trips_through_pypdfium2_exactly() -> None:
    data, seconds = timed(lambda: make_pdf(PAGES))
    assert seconds < 0.5 and data.startswith(b"%PDF-1.4")
    pdf = pypdfium2.PdfDocument(data)
    try:
        assert len(pdf) == 3
        raw = [pdf[i].get_textpage().get_text_bounded() for i in range(3)]
    finally:
        pdf.close()
    assert raw == [PAGES[0].replace("\n", "\r\n"), PAGES[1], ""]  # PDFium's own line break is \r\n

    info = pdf_info(data)
    assert info.page_count == 3
    assert info.texts == tuple(PAGES)
    assert info.sizes == ((612.0, 792.0),) * 3
    assert info.encrypted is False


def test_pdf_is_deterministic_and_sized_as_asked() -> None:
    assert make_pdf(["a", "b"]) == make_pdf(["a", "b"])
    assert make_pdf(["a"]) != make_pdf(["b"])
    assert pdf_info(make_pdf(["x"], size=(200, 100))).sizes == ((200.0, 100.0),)


def test_pdf_page_colours_dominate_the_rendered_page() -> None:
    data = make_pdf(["red page", "plain page", "blue page"], colours=[RED, None, BLUE])
    assert pdf_page_image(data, 0).getpixel((10, 10)) == RED
    assert pdf_page_image(data, 1).getpixel((10, 10)) == (255, 255, 255)
    image = pdf_page_image(data, 2, scale=0.5)
    assert image.size == (306, 396) and image.getpixel((300, 390)) == BLUE
    with pytest.raises(MediaError, match="no page 3"):
        pdf_page_image(data, 3)


def test_pdf_refuses_text_it_cannot_encode_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cp1252"):
        make_pdf(["\u4e2d\u6587"])
    with pytest.raises(ValueError, match="at least one page"):
        make_pdf([])
    with pytest.raises(ValueError, match="2 colours for 1 pages"):
        make_pdf(["a"], colours=[RED, BLUE])


def test_encrypted_pdf_needs_its_password() -> None:
    data = make_encrypted_pdf(["hidden invoice"])
    with pytest.raises(MediaError, match="encrypted and needs a password"):
        pdf_info(data)
    for password in ("secret", "owner"):  # real RC4 encryption: both passwords open it
        pdf = pypdfium2.PdfDocument(data, password=password)
        try:
            assert pdf[0].get_textpage().get_text_bounded() == "hidden invoice"
        finally:
            pdf.close()


def test_pdf_encrypted_without_a_user_password_opens_but_says_so() -> None:
    info = pdf_info(make_encrypted_pdf(["open"], user_password=""))
    assert info.texts == ("open",) and info.encrypted is True


@pytest.mark.parametrize(
    "data",
    [corrupt_pdf(), make_pdf(["truncated"])[:300], b"%PDF-1.7\n garbage", b"not a pdf at all"],
    ids=["corrupt", "truncated", "garbage", "not-pdf"],
)
def test_broken_pdfs_raise_media_error(data: bytes) -> None:
    with pytest.raises(MediaError):
        pdf_info(data)


def test_pdf_reads_from_many_threads_at_once() -> None:
    data = make_pdf([f"page {i}" for i in range(5)])
    results: list[tuple[str, ...]] = []
    threads = [threading.Thread(target=lambda: results.append(pdf_info(data).texts)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tuple(f"page {i}" for i in range(5))] * 8


# -- video --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["mp4", "mov", "webm"])
@pytest.mark.parametrize("audio", [False, True])
def test_video_reads_back_as_made(container: str, audio: bool) -> None:
    data, seconds = timed(lambda: make_video(12, colour=SPANS, audio=audio, container=container))
    assert seconds < 1.0
    assert len(data) < 150_000
    assert make_video(12, colour=SPANS, audio=audio, container=container) == data  # deterministic
    info = video_info(data)
    assert abs(info.duration - 12) <= 1 / 4  # within one frame
    assert info.has_audio is audio
    assert (info.width, info.height, info.fps) == (64, 48, 4.0)
    assert info.format == container
    assert info.media_type == {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}[container]
    assert info.video_codec == ("vp9" if container == "webm" else "h264")
    assert info.audio_codec == (("opus" if container == "webm" else "aac") if audio else None)


def test_video_colour_follows_the_spans() -> None:
    data = make_video(12, colour=SPANS)
    (first, second, third), seconds = timed(lambda: [video_colour(data, s, s + 4) for s in (0, 4, 8)])
    assert close(first, RED) and close(second, GREEN) and close(third, BLUE)
    assert close(video_colour(data, 8), BLUE)  # to the end
    assert close(video_colour(data), (85, 85, 85))  # the mean of all three thirds
    assert close(video_colour(data, 3.5, 4.5), (128, 128, 0))  # two red frames, two green
    assert seconds < 1.0
    with pytest.raises(MediaError, match="no video frame"):
        video_colour(data, 13)


def test_video_lengths_sizes_and_rates() -> None:
    info = video_info(make_video(2.5, fps=8, size=(32, 16), colour=(0, 0, 0)))
    assert (info.width, info.height, info.fps) == (32, 16, 8.0)
    assert abs(info.duration - 2.5) <= 1 / 8
    with pytest.raises(ValueError, match="even"):
        make_video(1, size=(63, 48))
    with pytest.raises(ValueError, match="container"):
        make_video(1, container="avi")
    with pytest.raises(ValueError, match="spans"):
        make_video(1, colour=[(1, RED)])


@pytest.mark.parametrize("reader", [video_info, video_colour, audio_info])
@pytest.mark.parametrize("data", [b"", b"junk" * 100, make_video(2)[:400]], ids=["empty", "junk", "truncated"])
def test_unreadable_media_raise_media_error(reader: Callable[[bytes], Any], data: bytes) -> None:
    with pytest.raises(MediaError, match="cannot read"):
        reader(data)


def test_readers_refuse_the_wrong_kind() -> None:
    with pytest.raises(MediaError, match="no video stream"):
        video_info(make_audio(1, format="mp3"))
    with pytest.raises(MediaError, match="no audio stream"):
        audio_info(make_video(1))


# -- audio --------------------------------------------------------------------------------------------------


def test_wav_duration_is_exact() -> None:
    data, seconds = timed(lambda: make_audio(3))
    assert seconds < 0.2
    assert len(data) == 44 + 3 * 16_000 * 2
    info = audio_info(data)
    assert (info.duration, info.sample_rate, info.channels, info.format, info.media_type) == (
        3.0, 16_000, 1, "wav", "audio/wav",
    )
    stereo = audio_info(make_audio(1.25, sample_rate=8_000, channels=2))
    assert (stereo.duration, stereo.sample_rate, stereo.channels) == (1.25, 8_000, 2)


@pytest.mark.parametrize(
    ("fmt", "media_type", "codec"),
    [("mp3", "audio/mpeg", "mp3"), ("ogg", "audio/ogg", "opus"), ("flac", "audio/flac", "flac"),
     ("m4a", "audio/mp4", "aac")],
)
def test_compressed_audio_reads_back(fmt: str, media_type: str, codec: str) -> None:
    data, seconds = timed(lambda: make_audio(3, format=fmt))
    assert seconds < 0.5 and len(data) < 40_000
    assert make_audio(3, format=fmt) == data
    info = audio_info(data)
    assert abs(info.duration - 3) < 0.05  # encoder padding
    assert info.media_type == media_type and info.format == fmt and info.codec.startswith(codec)
    assert info.channels == 1


# -- sniffing -----------------------------------------------------------------------------------------------


def test_sniff_knows_every_generated_kind() -> None:
    assert sniff(make_pdf(["x"])) == "application/pdf"
    assert sniff(make_video(1)) == "video/mp4"
    assert sniff(make_video(1, container="mov")) == "video/quicktime"
    assert sniff(make_video(1, container="webm")) == "video/webm"
    assert sniff(make_audio(0.5)) == "audio/wav"
    assert sniff(make_audio(0.5, format="mp3")) == "audio/mpeg"
    assert sniff(make_audio(0.5, format="ogg")) == "audio/ogg"
    assert sniff(make_audio(0.5, format="flac")) == "audio/flac"
    assert sniff(make_audio(0.5, format="m4a")) == "audio/mp4"


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00\x00\x00\x08free"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_ftyp(b"mp42", b"isom", b"mp42"), "video/mp4"),
        (_ftyp(b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4"),
        (_ftyp(b"qt  ", b"qt  "), "video/quicktime"),
        (_ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4"),
        (_ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
        (_ftyp(b"avif", b"avif", b"mif1"), "image/avif"),
        (_ftyp(b"zzzz", b"zzzz"), None),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x10mdat", "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"\x00\x00\x01\xba\x44\x00\x04\x00", "video/mpeg"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video/x-msvideo"),
        (b"FORM\x00\x00\x00\x00AIFFCOMM", "audio/aiff"),
        (b"\xff\xfb\x90\x64" + bytes(100), "audio/mpeg"),  # bare MPEG-1 layer III frame
        (b"\xff\xf1\x50\x80" + bytes(100), "audio/aac"),  # ADTS
        (b"ID3\x04\x00\x00\x00\x00\x00\x00fLaC\x00", "audio/flac"),
        (b"OggS\x00\x02" + bytes(22) + b"\x01\x1e\x01vorbis", "audio/ogg"),
        (b"OggS\x00\x02" + bytes(22) + b"\x01\x2a\x80theora", "video/ogg"),
        (b"\n\n%PDF-1.7\n", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"GIF89a", "image/gif"),
        (b"", None),
        (b"hello, world", None),
        (b"RIFF\x00\x00\x00\x00JUNK", None),
        (b"\xff\xff\xff\xff", None),  # sync bits but an invalid MPEG header
        (b"\x00\x00\x00\x01ftyp", None),
        (bytes(range(256)) * 4, None),
    ],
)
def test_sniff_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


def test_sniff_is_reexported_for_the_emulator() -> None:
    assert media.sniff is sniff


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    with pytest.raises(ImportError, match=r"mmembed\[media\]"):
        make_video(1)
    with pytest.raises(ImportError, match=r"pip install 'mmembed\[media\]'"):
        pdf_info(make_pdf(["x"]))
    assert make_audio(0.25)  # WAV needs neither
