"""Sample PDFs, videos and audio made in code, and the server-side readers the emulator answers with.

What is fake: the samples are synthetic — PDF pages of plain Helvetica text on an optional page colour, videos
of flat colour (changing at given times) with a sine tone, audio of a sine tone — tiny and quick to make, for
tests, demos and benchmarks. What is real: they are valid files any reader accepts (the PDFs carry a real text
layer; the videos are H.264/VP9 in real MP4/MOV/WebM containers), so they exercise the client's sniffing, limits
and upload paths, and the emulator can read back what a real server would see: page texts, durations, whether
there is sound, and the colour of a time window (so a fake video space can tell segments apart).

The readers decode frames; they are for the emulator (the server side). The client must never decode video.

>>> pdf_info(make_pdf(["An invoice", "A receipt"])).texts
('An invoice', 'A receipt')
>>> audio_info(make_audio(1.5)).duration
1.5
"""

from __future__ import annotations

import hashlib
import io
import math
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._extras import PDFIUM_LOCK, missing_extra
from ..media_types import sniff

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "RGB",
    "AudioInfo",
    "MediaError",
    "PdfInfo",
    "VideoInfo",
    "audio_info",
    "corrupt_pdf",
    "make_audio",
    "make_encrypted_pdf",
    "make_pdf",
    "make_video",
    "pdf_info",
    "pdf_page_image",
    "sniff",
    "video_colour",
    "video_info",
]

RGB = tuple[int, int, int]


class MediaError(ValueError):
    """A PDF, video or audio file the emulator cannot read; the message is short enough to answer a 400 with."""


# -- PDF: written by hand, so no writer library is needed ---------------------------------------------------

_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")  # PDF 1.7, 7.6.3.3


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


@dataclass(frozen=True)
class _Rc4Security:
    """The standard security handler, revision 2 (40-bit RC4): weak, but every reader knows it."""

    key: bytes
    owner_entry: bytes
    user_entry: bytes
    permissions: int = -4

    @classmethod
    def create(cls, user_password: str, owner_password: str, file_id: bytes) -> _Rc4Security:
        user = (user_password.encode("latin-1") + _PAD)[:32]
        owner = ((owner_password or user_password).encode("latin-1") + _PAD)[:32]
        owner_entry = _rc4(_md5(owner)[:5], user)
        key = _md5(user + owner_entry + (-4).to_bytes(4, "little", signed=True) + file_id)[:5]
        return cls(key, owner_entry, _rc4(key, _PAD))

    def encrypt(self, number: int, data: bytes) -> bytes:
        return _rc4(_md5(self.key + number.to_bytes(3, "little") + b"\x00\x00")[:10], data)

    def dictionary(self) -> bytes:
        return (
            f"<< /Filter /Standard /V 1 /R 2 /O <{self.owner_entry.hex()}> /U <{self.user_entry.hex()}> "
            f"/P {self.permissions} >>"
        ).encode()


def _pdf_string(line: str) -> bytes:
    try:
        raw = line.encode("cp1252")  # what WinAnsiEncoding maps for the standard 14 fonts
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"make_pdf writes WinAnsi (cp1252) text only; cannot encode {line[exc.start:exc.end]!r}"
        ) from None
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _page_content(text: str, size: tuple[float, float], colour: RGB | None, font_size: float) -> bytes:
    width, height = size
    ops = []
    if colour is not None:
        r, g, b = (c / 255 for c in colour)
        ops.append(f"q {r:.4f} {g:.4f} {b:.4f} rg 0 0 {width:g} {height:g} re f Q".encode())
    lines = text.split("\n")
    if text:
        ops.append(f"BT /F1 {font_size:g} Tf {font_size * 1.25:g} TL 0 g 72 {height - 72:g} Td".encode())
        ops.append(b" T* ".join(_pdf_string(line) + b" Tj" for line in lines))
        ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def _write_pdf(
    pages: Sequence[str],
    size: tuple[float, float],
    colours: Sequence[RGB | None] | None,
    font_size: float,
    passwords: tuple[str, str] | None,
) -> bytes:
    if not pages:
        raise ValueError("a PDF needs at least one page")
    if colours is not None and len(colours) != len(pages):
        raise ValueError(f"{len(colours)} colours for {len(pages)} pages")
    width, height = size
    if not (width > 0 and height > 0):
        raise ValueError(f"page size must be positive, got {size!r}")
    contents = [_page_content(p, size, colours[i] if colours else None, font_size) for i, p in enumerate(pages)]
    # Deterministic: no dates, and the file ID is a digest of what the file says.
    file_id = _md5(repr((list(pages), size, colours, font_size, passwords)).encode())
    security = _Rc4Security.create(*passwords, file_id) if passwords else None

    # Objects: 1 catalog, 2 page tree, 3 font, then a page and its content stream per page, then /Encrypt.
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(pages)))
        + b"] /Count %d >>" % len(pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, content in enumerate(contents):
        number = 5 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width:g} {height:g}] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {number} 0 R >>".encode()
        )
        data = security.encrypt(number, content) if security else content
        objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    if security:
        objects.append(security.dictionary())

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    encrypt = b" /Encrypt %d 0 R" % len(objects) if security else b""
    out.write(b"trailer\n<< /Size %d /Root 1 0 R /ID [<%s> <%s>]%s >>\n" % (
        len(objects) + 1, file_id.hex().encode(), file_id.hex().encode(), encrypt))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def make_pdf(
    pages: Sequence[str],
    *,
    size: tuple[float, float] = (612, 792),
    colours: Sequence[RGB | None] | None = None,
    font_size: float = 12,
) -> bytes:
    """A PDF with one page per string, each carrying a real text layer (Helvetica, one line per ``\\n``).

    ``colours`` paints each page (None: white) under its text, so a rendered page has that dominant colour.
    Text must be encodable in cp1252 (WinAnsi); lines are not wrapped. Same arguments, same bytes.
    """
    return _write_pdf(pages, size, colours, font_size, None)


def make_encrypted_pdf(
    pages: Sequence[str] = ("secret",),
    *,
    user_password: str = "secret",
    owner_password: str = "owner",
    size: tuple[float, float] = (612, 792),
) -> bytes:
    """Like :func:`make_pdf`, but RC4-encrypted: with a ``user_password`` no reader opens it without that password.

    An empty ``user_password`` makes a PDF that opens without one but is still encrypted (owner restrictions).
    """
    return _write_pdf(pages, size, None, 12, (user_password, owner_password))


def corrupt_pdf(data: bytes | None = None) -> bytes:
    """``data`` (default: a one-page sample) with its objects cut away: it sniffs as a PDF but cannot be opened."""
    data = make_pdf(["corrupt"]) if data is None else data
    return data[: data.index(b"1 0 obj")] + b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R"


# -- PDF reading --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfInfo:
    """What a server reads from a PDF: its pages' text (``\\n`` between lines) and sizes in points."""

    page_count: int
    texts: tuple[str, ...]
    sizes: tuple[tuple[float, float], ...]
    encrypted: bool  # True also for PDFs that open without a password (owner restrictions only)


@contextmanager
def _open_pdf(data: bytes) -> Iterator[Any]:
    try:
        import pypdfium2
    except ImportError as exc:
        raise missing_extra("reading PDFs", "pypdfium2") from exc
    if sniff(data) != "application/pdf":
        raise MediaError("not a PDF (no %PDF- header)")
    with PDFIUM_LOCK:
        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise MediaError("the PDF is encrypted and needs a password") from None
            raise MediaError(f"cannot open the PDF: {exc}") from None
        try:
            yield pdf
        except pypdfium2.PdfiumError as exc:
            raise MediaError(f"cannot read the PDF: {exc}") from None
        finally:
            pdf.close()


def pdf_info(data: bytes) -> PdfInfo:
    """Page count, page texts and sizes of ``data``; MediaError when it is corrupt or needs a password."""
    with _open_pdf(data) as pdf:
        import pypdfium2.raw as pdfium_c  # importable: _open_pdf imported pypdfium2

        texts, sizes = [], []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_bounded().replace("\r\n", "\n"))
            sizes.append(tuple(page.get_size()))
            textpage.close()
            page.close()
        encrypted = pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) != -1
        return PdfInfo(len(pdf), tuple(texts), tuple(sizes), bool(encrypted))


def pdf_page_image(data: bytes, page: int = 0, *, scale: float = 0.25) -> Image.Image:
    """Page ``page`` (from 0) rendered to a Pillow RGB image at ``scale`` times 72 dpi."""
    with _open_pdf(data) as pdf:
        if not 0 <= page < len(pdf):
            raise MediaError(f"the PDF has {len(pdf)} pages; there is no page {page}")
        handle = pdf[page]
        bitmap = handle.render(scale=scale)
        image: Image.Image = bitmap.to_pil().convert("RGB")
        bitmap.close()
        handle.close()
        return image


# -- video and audio: encoded with PyAV ---------------------------------------------------------------------

#: container → (muxer, video encoder, audio encoder, encoder options)
_VIDEO_CONTAINERS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "mp4": ("mp4", "libx264", "aac", {"preset": "ultrafast", "bframes": "0", "threads": "1"}),
    "mov": ("mov", "libx264", "aac", {"preset": "ultrafast", "bframes": "0", "threads": "1"}),
    "webm": ("webm", "libvpx-vp9", "libopus", {"deadline": "realtime", "cpu-used": "8", "threads": "1"}),
}
#: format → (muxer, audio encoder); "wav" is written by the stdlib instead
_AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "libmp3lame"),
    "ogg": ("ogg", "libopus"),
    "flac": ("flac", "flac"),
    "m4a": ("ipod", "aac"),
}
_AUDIO_BIT_RATE = 32_000  # tiny files; the encoders' defaults (128k+) would dwarf the video
_SHORT_NAMES = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/x-matroska": "mkv",
    "video/mpeg": "mpeg", "video/x-msvideo": "avi", "video/ogg": "ogg", "audio/wav": "wav", "audio/mpeg": "mp3",
    "audio/ogg": "ogg", "audio/flac": "flac", "audio/mp4": "m4a", "audio/aac": "aac", "audio/aiff": "aiff",
}


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise missing_extra("making and reading video and audio", "PyAV (av)") from exc
    return av


def _tone(seconds: float, frequency: float, sample_rate: int, channels: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """A sine tone at 30 % of full scale, as int16 samples shaped (channels, n)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    mono = np.round(0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    return np.tile(mono, (channels, 1))


def _add_audio(out: Any, codec: str, rate: int, channels: int) -> Any:
    stream = out.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
    if codec != "flac":
        stream.bit_rate = _AUDIO_BIT_RATE
    return stream


def _mux_audio(av: Any, out: Any, stream: Any, samples: np.ndarray[Any, np.dtype[np.int16]]) -> None:
    # Packed s16 is one row of interleaved samples; PyAV converts and re-chunks to the encoder's frame size.
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(samples.T.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate, frame.pts = stream.rate, 0
    for packet in [*stream.encode(frame), *stream.encode(None)]:
        out.mux(packet)


def _colour_at(spans: Sequence[tuple[float, RGB]], t: float) -> RGB:
    current = spans[0][1]
    for start, colour in spans:
        if start <= t + 1e-9:
            current = colour
    return current


def _spans(colour: RGB | Sequence[tuple[float, RGB]]) -> list[tuple[float, RGB]]:
    if len(colour) == 3 and all(isinstance(c, int) for c in colour):
        return [(0.0, cast(RGB, colour))]
    spans = [(float(start), rgb) for start, rgb in cast(Sequence[tuple[float, RGB]], colour)]
    starts = [start for start, _ in spans]
    if not spans or starts[0] != 0 or starts != sorted(starts):
        raise ValueError("colour spans are (start seconds, (r, g, b)) pairs in time order, the first at 0")
    return spans


def make_video(
    seconds: float,
    *,
    colour: RGB | Sequence[tuple[float, RGB]] = (255, 0, 0),
    fps: int = 4,
    size: tuple[int, int] = (64, 48),
    audio: bool = False,
    container: str = "mp4",
    frequency: float = 440.0,
    keyframe_seconds: float | None = None,
) -> bytes:
    """A video of flat colour: ``round(seconds * fps)`` frames of H.264 in MP4/MOV, or VP9 in WebM.

    ``colour`` is one (r, g, b), or (start seconds, (r, g, b)) spans in time order from 0 — say
    ``[(0, red), (4, green), (8, blue)]`` — so segments of one video can be told apart. ``audio`` adds a mono
    16 kHz sine tone at ``frequency`` (AAC; Opus in WebM). ``keyframe_seconds`` puts a key frame that often
    (default: the encoder's, which may be a minute apart). Same arguments, same bytes (one encoder thread,
    bit-exact muxing) with the same PyAV/FFmpeg build.
    """
    if container not in _VIDEO_CONTAINERS:
        raise ValueError(f"container must be one of {', '.join(_VIDEO_CONTAINERS)}, not {container!r}")
    width, height = size
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"size must be even and at least 2x2 (4:2:0 video), got {size!r}")
    frames = round(seconds * fps)
    if frames < 1 or fps < 1:
        raise ValueError(f"{seconds} s at {fps} fps is no frame at all")
    spans = _spans(colour)
    av = _av()
    muxer, video_codec, audio_codec, options = _VIDEO_CONTAINERS[container]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer) as out:
        out.flags |= av.container.Flags.bitexact.value  # no random segment ids or encoder strings: reproducible bytes
        stream = out.add_stream(video_codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if keyframe_seconds is not None:
            stream.codec_context.gop_size = max(1, round(keyframe_seconds * fps))
        sound = _add_audio(out, audio_codec, 16_000, 1) if audio else None  # every stream before the first packet
        for index in range(frames):
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[:] = _colour_at(spans, index / fps)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if sound is not None:
            _mux_audio(av, out, sound, _tone(frames / fps, frequency, 16_000, 1))
    return buffer.getvalue()


def make_audio(
    seconds: float,
    *,
    frequency: float = 440.0,
    format: str = "wav",
    sample_rate: int = 16_000,
    channels: int = 1,
) -> bytes:
    """A sine tone: 16-bit PCM WAV (stdlib, exact length), or MP3, Ogg Opus, FLAC or M4A (AAC) via PyAV.

    Compressed formats carry their encoder's padding, so their reported duration can exceed ``seconds`` by a
    few tens of milliseconds. Same arguments, same bytes.
    """
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels!r}")
    samples = _tone(seconds, frequency, sample_rate, channels)
    if samples.shape[1] == 0:
        raise ValueError(f"{seconds} s at {sample_rate} Hz is no sample at all")
    if format == "wav":
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(samples.T.astype("<i2").tobytes())
        return buffer.getvalue()
    if format not in _AUDIO_FORMATS:
        raise ValueError(f"format must be wav or one of {', '.join(_AUDIO_FORMATS)}, not {format!r}")
    av = _av()
    muxer, codec = _AUDIO_FORMATS[format]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer) as out:
        out.flags |= av.container.Flags.bitexact.value
        _mux_audio(av, out, _add_audio(out, codec, sample_rate, channels), samples)
    return buffer.getvalue()


# -- video and audio reading (server side: this decodes) ----------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What a server reads from a video file."""

    duration: float  # seconds, the container's (the longest stream)
    width: int
    height: int
    fps: float
    has_audio: bool
    media_type: str | None  # from the magic bytes, e.g. "video/mp4"
    format: str  # short name: mp4, mov, webm, mkv, ...
    video_codec: str
    audio_codec: str | None


@dataclass(frozen=True)
class AudioInfo:
    """What a server reads from an audio file."""

    duration: float  # seconds; exact for WAV, the container's estimate otherwise
    sample_rate: int
    channels: int
    media_type: str | None
    format: str  # short name: wav, mp3, ogg, flac, m4a, ...
    codec: str


@contextmanager
def _open_av(data: bytes, what: str) -> Iterator[Any]:
    av = _av()
    try:
        with av.open(io.BytesIO(data), "r") as container:
            yield container
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read the {what}: {getattr(exc, 'strerror', None) or exc}") from None


def _duration(container: Any) -> float:
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    ends = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    return max(ends, default=0.0)


def _short_name(media_type: str | None, container: Any) -> str:
    return _SHORT_NAMES.get(media_type or "", str(container.format.name).split(",")[0])


def video_info(data: bytes) -> VideoInfo:
    """Duration, frame size and rate, sound, container and codecs of a video; MediaError when unreadable."""
    media_type = sniff(data)
    with _open_av(data, "video") as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = video.average_rate or video.base_rate or 0
        return VideoInfo(
            duration=_duration(container),
            width=int(video.codec_context.width),
            height=int(video.codec_context.height),
            fps=float(rate),
            has_audio=audio is not None,
            media_type=media_type,
            format=_short_name(media_type, container),
            video_codec=str(video.codec_context.name),
            audio_codec=None if audio is None else str(audio.codec_context.name),
        )


def video_colour(data: bytes, start: float = 0.0, end: float | None = None) -> RGB:
    """The mean colour of the frames shown from ``start`` (inclusive) to ``end`` (exclusive; None: the end).

    Frames are scaled down before averaging, so long or large videos stay cheap; MediaError when no frame falls
    in the window.
    """
    stop = math.inf if end is None else end
    total = np.zeros(3)
    count = 0
    with _open_av(data, "video") as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        stream = container.streams.video[0]
        if start > 0 and stream.time_base:
            container.seek(int(start / stream.time_base), stream=stream)  # to the key frame at or before start
        for frame in container.decode(stream):
            if frame.time is None or frame.time < start - 1e-6:
                continue
            if frame.time >= stop - 1e-6:
                break
            small = frame.reformat(width=min(frame.width, 32), height=min(frame.height, 32), format="rgb24")
            total += small.to_ndarray().reshape(-1, 3).mean(axis=0)
            count += 1
    if count == 0:
        raise MediaError(f"no video frame between {start:g} s and {stop:g} s")
    r, g, b = (round(float(c)) for c in total / count)
    return r, g, b


def _wav_info(data: bytes) -> AudioInfo | None:
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            rate, frames, channels = wav.getframerate(), wav.getnframes(), wav.getnchannels()
            width = wav.getsampwidth()
    except (wave.Error, EOFError):
        return None  # not PCM (float, extensible…) or broken: let FFmpeg try
    if rate <= 0:
        return None
    codec = "pcm_u8" if width == 1 else f"pcm_s{8 * width}le"
    return AudioInfo(frames / rate, rate, channels, "audio/wav", "wav", codec)


def audio_info(data: bytes) -> AudioInfo:
    """Duration, sample rate, channels and format of an audio file; MediaError when unreadable."""
    media_type = sniff(data)
    if media_type == "audio/wav" and (info := _wav_info(data)) is not None:
        return info
    with _open_av(data, "audio") as container:
        if not container.streams.audio:
            raise MediaError("the file has no audio stream")
        stream = container.streams.audio[0]
        return AudioInfo(
            duration=_duration(container),
            sample_rate=int(stream.codec_context.sample_rate),
            channels=int(stream.codec_context.channels),
            media_type=media_type,
            format=_short_name(media_type, container),
            codec=str(stream.codec_context.name),
        )
