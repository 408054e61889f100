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
