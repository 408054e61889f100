"""What a video or audio file holds, read from its container (PyAV), and the limits mmembed applies to media.

Only the container's header is read: its duration and which streams it has. **No frame is ever decoded**
on the client, so a provider that takes the file gets it untouched and a long film costs a header read.
PyAV (FFmpeg in a wheel, no system ffmpeg) is imported only when a video or audio item is met; its
exceptions never escape (each becomes an :class:`~mmembed.errors.InputError`).
"""

from __future__ import annotations

import io
import math
import pathlib
from dataclasses import dataclass
from typing import Any

from ._extras import missing_extra
from .errors import ConfigurationError, InputError

__all__ = ["MediaInfo", "MediaLimits", "probe"]


@dataclass(frozen=True)
class MediaLimits:
    """Caps and settings for PDFs, video and audio (defaults: the strictest documented provider limits).

    ``max_pdf_pages`` / ``max_pdf_bytes``: a larger document is refused. ``pdf_pages_per_content``: pages per
    native PDF content, for a model that reads PDFs (6, the strictest documented); longer documents are split.
    ``render_max_pixels``: the pixel cap of a rendered page. ``max_media_bytes``: video/audio sent inline.
    ``video_seconds`` / ``video_seconds_with_audio`` / ``audio_seconds``: the longest video (without / with a
    sound track) and audio a model that reads them natively takes in one content (120/80/80 s, the documented
    figures). ``video_window`` (120 s) and ``video_interval`` (16 s, at least 4): for a model that embeds time
    ranges of a video with a fixed window per request, that window and the segment length.
    """

    max_pdf_pages: int = 500
    max_pdf_bytes: int = 50 * 1024 * 1024
    pdf_pages_per_content: int = 6
    render_max_pixels: int = 4_000_000
    max_media_bytes: int = 20 * 1024 * 1024
    video_seconds: float = 120.0
    video_seconds_with_audio: float = 80.0
    audio_seconds: float = 80.0
    video_window: float = 120.0
    video_interval: float = 16.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"MediaLimits.{name} must be a positive number, got {value!r}")
        if self.video_interval < 4:
            raise ConfigurationError("MediaLimits.video_interval must be at least 4 seconds (the API's minimum)")


@dataclass(frozen=True)
class MediaInfo:
    """A container's duration in seconds and whether it has video and audio streams."""

    duration: float
    has_video: bool
    has_audio: bool


def probe(raw: bytes | pathlib.Path) -> MediaInfo:
    """Duration and streams of a video or audio file, from its container metadata (frames are not decoded)."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - an optional extra
        raise missing_extra("reading video and audio", "av") from exc
    source: str | io.BytesIO = str(raw) if isinstance(raw, pathlib.Path) else io.BytesIO(raw)
    try:
        container = av.open(source, mode="r", timeout=10.0)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"not a readable video or audio file ({_reason(exc)})") from None
    except Exception as exc:  # anything else from FFmpeg's wrapper: never crash deep inside it
        raise InputError(f"not a readable video or audio file ({type(exc).__name__})") from None
    try:
        kinds = {stream.type for stream in container.streams}
        duration = _duration(container)
    except Exception as exc:
        raise InputError(f"cannot read the media container ({type(exc).__name__})") from None
    finally:
        container.close()
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise InputError("the media file declares no duration")
    return MediaInfo(duration=duration, has_video="video" in kinds, has_audio="audio" in kinds)


def _duration(container: object) -> float | None:
    import av

    total = getattr(container, "duration", None)  # microseconds (AV_TIME_BASE)
    if total:
        return float(total) / av.time_base
    best = None
    for stream in getattr(container, "streams", ()):
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
            best = seconds if best is None else max(best, seconds)
    return best


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() or type(exc).__name__


KEYFRAME_SLACK = 5.0  # seconds a cut clip may begin before the time asked for (at the key frame before it)
# The container each media type is written back in when a clip is cut from it (see cut()).
_MUXERS = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/x-matroska": "matroska",
    "video/mpeg": "mpeg", "audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/ogg": "ogg",
    "audio/flac": "flac",
}


def cut(data: bytes, media_type: str, start: float, end: float, *, max_seconds: float | None = None) -> bytes:
    """The span ``start``..``end`` seconds of a video or audio file, in the same container, for an API that
    takes a file but no time range.

    Packets are copied, never decoded or re-encoded: the clip begins at the key frame at or before ``start``
    (so it may start a little early), and ends so that it lasts at most ``max_seconds`` when given.
    """
    try:
        import av
    except ImportError as exc:  # pragma: no cover - an optional extra
        raise missing_extra("cutting video and audio", "av") from exc
    muxer = _MUXERS.get(media_type)
    if muxer is None:
        raise InputError(f"cannot cut a clip from {media_type} files; pass clips of it as separate files")
    out = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), mode="r") as src, av.open(out, mode="w", format=muxer) as dst:
            _copy_span(src, dst, start, end, max_seconds)
    except InputError:
        raise
    except Exception as exc:  # FFmpeg's wrapper: never crash deep inside it
        raise InputError(f"cannot cut {start:g}-{end:g} s from the {media_type} file ({type(exc).__name__})") from None
    return out.getvalue()


def _copy_span(src: Any, dst: Any, start: float, end: float, max_seconds: float | None) -> None:
    """Copy the packets of ``start``..``end``, shifted to time 0: from the last key frame at or before ``start``
    (a clip cannot begin between key frames without re-encoding), each packet wholly inside the span."""
    streams = [s for s in src.streams if s.type in ("video", "audio")]
    if not streams:
        raise InputError("the media file has no video or audio stream")
    outputs = {s.index: dst.add_stream_from_template(s) for s in streams}
    has_video = any(s.type == "video" for s in streams)
    gop: list[Any] = []  # the packets since the last video key frame, until the span begins
    origin: float | None = None  # the clip's first timestamp (seconds): every stream is shifted by it
    stop = end
    for packet in src.demux(*streams):
        if packet.dts is None or packet.pts is None:
            continue
        at, length = _seconds(packet.pts, packet), _seconds(packet.duration or 0, packet)
        if origin is None:
            if packet.stream.type == "video" and packet.is_keyframe:
                gop = []
            if at < start - 1e-6 or (has_video and not gop and not packet.is_keyframe):
                gop.append(packet)
                continue
            keyed = [p for p in gop if p.stream.type == "video" and p.is_keyframe] if has_video else []
            origin = _seconds(keyed[0].pts, keyed[0]) if keyed else at
            if start - origin > KEYFRAME_SLACK:
                raise InputError(
                    f"the video's key frames are too far apart to cut a clip at {start:g} s without re-encoding "
                    f"(the nearest is at {origin:g} s); re-encode it with a key frame every few seconds"
                )
            stop = min(end, origin + max_seconds) if max_seconds is not None else end
            for early in gop:
                if _seconds(early.pts, early) >= origin - 1e-6:
                    _mux(dst, outputs, early, origin)
        if at + length > stop + 1e-6:
            continue
        _mux(dst, outputs, packet, origin)


def _seconds(value: int, packet: Any) -> float:
    return float(value * packet.time_base)


def _mux(dst: Any, outputs: dict[int, Any], packet: Any, origin: float) -> None:
    shift = round(origin / packet.time_base)
    packet.pts -= shift
    packet.dts -= shift
    packet.stream = outputs[packet.stream.index]
    dst.mux(packet)
