"""What an item becomes when the model cannot take it as it is: every fallback in one place, each named.

The embedder asks :func:`plan` about each item. ``None`` means the provider takes the item natively, as it is.
Otherwise the item is replaced by leaf items with weights, embedded in the same pass as everything else, and
recombined into ONE vector (the weighted mean of the leaves' unit vectors, re-normalised), so ``embed`` keeps
its contract: one row per item, in input order.

* **pdf_pages** — a PDF on a model that reads only text and images: each page is rendered to an image at the
  model's input size and, where the model reads text (not a visual document retriever, which reads page images),
  its text layer becomes a text item beside it.
* **pdf_chunks** — a PDF longer than one content may be (``MediaLimits.pdf_pages_per_content``): page-range
  sub-PDFs, weighted by their page counts.
* **media_windows** — a video (or audio) longer than one request may cover, on a model that embeds a time range
  of a file: clips of at most the model's declared window (its family's ``media_seconds``, else
  ``MediaLimits.video_window``), weighted by their length. A whole video on such a model becomes the clip
  0..duration (read from the container).
* **interleaved_mean** — an :class:`~mmembed.Interleaved` the model cannot embed as one content: the weighted
  mean of its parts (equal weights by default).
* **refused** — a kind the model cannot take at all (video or audio on a text+image model): an
  :class:`~mmembed.InputError` naming the providers and models that can, read from the provider registry.

:func:`segments` is the other direction, for :meth:`mmembed.Embedder.expand`: an item split into the pieces
that each deserve their own vector (pages, video segments), with their metadata.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InputError, UnsupportedKindError
from .inputs import (
    AudioItem,
    DocumentItem,
    ImageItem,
    InterleavedItem,
    Item,
    PageImage,
    TextItem,
    VideoItem,
)

if TYPE_CHECKING:
    from .providers.base import Provider

__all__ = ["PAGE_TEXT_CHARS", "PASSAGE_CHARS", "Segment", "plan", "segments"]

Leaves = list[tuple[Item, float]]
PAGE_TEXT_CHARS = 4000  # of a page's text, as one text item of a whole-document vector
PASSAGE_CHARS = 1200  # per text passage of a page, in expand()
MIN_SEGMENT = 4.0  # the clipping API refuses intervals under 4 s: a shorter tail joins the segment before it


@dataclass(frozen=True)
class Segment:
    """One piece of an expanded item: embed ``item`` to get its vector.

    ``parent`` is the index of the item it came from; ``modality`` is ``text``, ``image``, ``pdf``, ``video``,
    ``audio`` or ``interleaved`` (a PDF page's text passage is ``text``: it ranks among texts); ``metadata``
    says where in the parent it lies: ``{"page": 3}``, ``{"page": 3, "passage": 0}``,
    ``{"start": 0.0, "end": 16.0}``.
    """

    item: Item
    parent: int
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)


def plan(provider: Provider, item: Item) -> Leaves | None:
    """None when ``provider`` embeds ``item`` natively as it is; else its leaf items with their weights."""
    if isinstance(item, InterleavedItem):
        return _interleaved_mean(provider, item)
    if isinstance(item, DocumentItem):
        return _pdf(provider, item)
    if isinstance(item, VideoItem):
        return _video(provider, item)
    if isinstance(item, AudioItem):
        return _audio(provider, item)
    if item.kind not in provider.native_kinds():
        raise refused(provider, item.kind)
    return None


def refused(provider: Provider, kind: str) -> UnsupportedKindError:
    """The error for a kind ``provider``'s model cannot embed, naming the providers and models that can."""
    from .providers import PROVIDERS

    able = [f"{name} ({', '.join(models)})" for name, cls in PROVIDERS.items() if (models := cls.models_taking(kind))]
    model = " + ".join(provider.model_names().values())
    advice = f"providers that can: {'; '.join(able)}" if able else "no provider here can"
    what = _LABELS.get(kind, kind)
    if provider.native_kinds() == {"text"}:
        return UnsupportedKindError(f"{provider.name}: {model} embeds text only, so it cannot embed {what}; {advice}")
    return UnsupportedKindError(f"{provider.name} {model} cannot embed {what}; {advice}")


_LABELS = {"pdf": "PDF documents", "video": "video", "audio": "audio", "image": "images", "text": "text"}


# -- the named fallbacks ----------------------------------------------------------------------------
def _interleaved_mean(provider: Provider, item: InterleavedItem) -> Leaves | None:
    if provider.takes_interleaved(item) and all(plan(provider, part) is None for part in item.parts):
        return None
    weights = item.weights or tuple(1.0 for _ in item.parts)
    return [(part, w) for part, w in zip(item.parts, weights, strict=True) if w > 0]


def _pdf(provider: Provider, item: DocumentItem) -> Leaves | None:
    native = provider.native_kinds()
    limits = provider.options.media_limits
    if item.raw is None:  # a gs:// or URL document: only a provider that reads it may take it, whole
        if "pdf" in native:
            return None
        raise InputError(
            f"{provider.name} renders PDFs page by page here, which needs the file: download it and pass its path"
        )
    per = limits.pdf_pages_per_content
    if "pdf" in native and item.pages is not None and item.pages[1] - item.pages[0] < per:
        return None  # a page range that fits one content (as expand makes them): read only when prepared
    first, last, data = _pages(provider, item)
    if "pdf" in native:  # pdf_chunks
        if last - first + 1 <= per:
            return None
        return [
            (dataclasses.replace(item, pages=(a, min(a + per - 1, last))), float(min(a + per - 1, last) - a + 1))
            for a in range(first, last + 1, per)
        ]
    if "image" not in native:
        raise refused(provider, "pdf")
    return _pdf_pages(provider, item, first, last, data)


def _pdf_pages(provider: Provider, item: DocumentItem, first: int, last: int, data: bytes) -> Leaves:
    from .documents import page_texts

    whole = dataclasses.replace(item, pages=None)
    texts = _texts(provider, data, first, last, page_texts)
    leaves: Leaves = []
    for number, text in zip(range(first, last + 1), texts, strict=True):
        leaves.append((page_image(whole, number), 1.0))
        if text:
            leaves.append((TextItem(text[:PAGE_TEXT_CHARS]), 1.0))
    return leaves


def page_image(document: DocumentItem, number: int) -> ImageItem:
    """Page ``number`` of ``document`` as an image item, rendered when it is prepared."""
    return ImageItem(source=f"{document.source} page {number}", raw=PageImage(document, number))


def _texts(provider: Provider, data: bytes, first: int, last: int, reader: Any) -> list[str]:
    if provider.reads_page_text() and "text" in provider.native_kinds():
        texts: list[str] = reader(data, first, last)
        return texts
    return [""] * (last - first + 1)


def _pages(provider: Provider, item: DocumentItem) -> tuple[int, int, bytes]:
    from .documents import page_count

    limits = provider.options.media_limits
    data = item.data(limits.max_pdf_bytes)
    count = page_count(data)
    if count > limits.max_pdf_pages:
        raise InputError(
            f"the PDF has {count} pages, over the limit of {limits.max_pdf_pages} (MediaLimits.max_pdf_pages)"
        )
    first, last = item.pages or (1, count)
    if last > count:
        raise InputError(f"pages {first}-{last} asked for, but the PDF has {count} pages")
    return first, last, data


def _video(provider: Provider, item: VideoItem) -> Leaves | None:
    if "video" not in provider.native_kinds():
        raise refused(provider, "video")
    if provider.clips_video():
        return _windows(provider, item)
    if item.start is not None or item.end is not None:
        raise InputError(f"{provider.name} embeds whole video files only, not a clip (start/end) of one")
    if item.raw is not None:
        _check_length(provider, item)
    return None


def _audio(provider: Provider, item: AudioItem) -> Leaves | None:
    if "audio" not in provider.native_kinds():
        raise refused(provider, "audio")
    if provider.clips_audio():
        return _windows(provider, item)
    if item.start is not None or item.end is not None:
        raise InputError(f"{provider.name} embeds whole audio files only, not a span (start/end) of one")
    _check_audio(provider, item)
    return None


def window(provider: Provider) -> float:
    """The longest span one request covers on a model that embeds time ranges: the model's own declared limit,
    else :attr:`MediaLimits.video_window <mmembed.MediaLimits>`."""
    return provider.media_seconds() or provider.options.media_limits.video_window


def _windows(provider: Provider, item: VideoItem | AudioItem) -> Leaves | None:
    """media_windows: spans of at most one request's length, weighted by their length (None: the item fits)."""
    span = window(provider)
    if item.start is not None and item.end is not None and item.end - item.start <= span:
        return None
    if item.raw is None:  # a remote file: no duration known here, so a clip needs both ends
        if item.start is None or item.end is None:
            if item.start is not None or item.end is not None:
                raise InputError(f"a clip of a remote {item.kind} needs both start= and end=")
            return None  # no range: the server's default window
        start, end = item.start, item.end
    else:
        start, end = _clip(item)
    if end - start <= span:
        return [(dataclasses.replace(item, start=start, end=end), 1.0)]
    return [(dataclasses.replace(item, start=a, end=b), b - a) for a, b in _edges(start, end, span)]


def _clip(item: VideoItem | AudioItem) -> tuple[float, float]:
    from .mediainfo import probe

    if item.raw is None:
        raise InputError(f"a clip of a remote {item.kind} needs both start and end")
    duration = probe(item.raw).duration
    start = item.start or 0.0
    end = min(item.end if item.end is not None else duration, duration)
    if start >= end:
        raise InputError(f"the clip starts at {start:g} s, but the {item.kind} ends at {duration:.1f} s")
    return start, end


def _edges(start: float, end: float, step: float) -> list[tuple[float, float]]:
    """Consecutive spans of ``step`` seconds from ``start`` to ``end``; a tail under 4 s joins the span before."""
    spans: list[tuple[float, float]] = []
    a = start
    while a < end - 1e-9:
        spans.append((a, min(a + step, end)))
        a += step
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < MIN_SEGMENT:
        spans[-2:] = [(spans[-2][0], spans[-1][1])]
    return [(round(a, 3), round(b, 3)) for a, b in spans]


def _check_length(provider: Provider, item: VideoItem) -> float:
    from .mediainfo import probe

    if item.raw is None:
        raise InputError("a remote video's length cannot be checked here")
    limits = provider.options.media_limits
    info = probe(item.raw)
    cap = limits.video_seconds_with_audio if info.has_audio else limits.video_seconds
    cap = min(cap, provider.media_seconds() or cap)  # the model's own limit, when it declares one
    if info.duration > cap:
        track = "with" if info.has_audio else "without"
        raise InputError(
            f"the video is {info.duration:.1f} s long; {provider.name} takes at most {cap:g} s of video {track} a "
            "sound track in one content (MediaLimits); cut it into shorter files"
        )
    return info.duration


def _check_audio(provider: Provider, item: AudioItem) -> float | None:
    from .mediainfo import probe

    if "audio" not in provider.native_kinds():
        raise refused(provider, "audio")
    if item.raw is None:
        return None
    duration = probe(item.raw).duration
    cap = provider.options.media_limits.audio_seconds
    cap = min(cap, provider.media_seconds() or cap)
    if duration > cap:
        raise InputError(
            f"the audio is {duration:.1f} s long; {provider.name} takes at most {cap:g} s in one content "
            "(MediaLimits.audio_seconds); cut it into shorter files"
        )
    return duration


# -- expand: one item → the segments that each get a vector -------------------------------------------
def segments(provider: Provider, item: Item, parent: int) -> list[Segment]:
    """The segments of ``item``: pages of a PDF, segments or the whole of a video, else the item itself."""
    if isinstance(item, DocumentItem):
        return _pdf_segments(provider, item, parent)
    if isinstance(item, VideoItem):
        return _video_segments(provider, item, parent)
    if isinstance(item, AudioItem):
        if provider.clips_audio() and item.raw is not None:
            return _spans(provider, item, parent)
        duration = _check_audio(provider, item)
        meta: dict[str, Any] = {} if duration is None else {"start": 0.0, "end": round(duration, 3)}
        return [Segment(item, parent, "audio", meta)]
    plan(provider, item)  # refuse now what embed would refuse
    return [Segment(item, parent, item.kind, {})]


def _pdf_segments(provider: Provider, item: DocumentItem, parent: int) -> list[Segment]:
    from .documents import page_texts

    native = provider.native_kinds()
    if item.raw is None:
        plan(provider, item)
        return [Segment(item, parent, "pdf", {})]
    first, last, data = _pages(provider, item)
    if "pdf" in native:
        return [
            Segment(dataclasses.replace(item, pages=(n, n)), parent, "pdf", {"page": n}) for n in range(first, last + 1)
        ]
    if "image" not in native:
        raise refused(provider, "pdf")
    whole = dataclasses.replace(item, pages=None)
    out: list[Segment] = []
    texts = _texts(provider, data, first, last, page_texts)
    for number, text in zip(range(first, last + 1), texts, strict=True):
        out.append(Segment(page_image(whole, number), parent, "pdf", {"page": number}))
        for k, passage in enumerate(passages(text)):
            out.append(Segment(TextItem(passage), parent, "text", {"page": number, "passage": k}))
    return out


def _video_segments(provider: Provider, item: VideoItem, parent: int) -> list[Segment]:
    if "video" not in provider.native_kinds():
        raise refused(provider, "video")
    if provider.clips_video() and item.raw is not None:
        return _spans(provider, item, parent)
    if item.raw is not None and not provider.clips_video():
        plan(provider, item)
        duration = _check_length(provider, item)
        return [Segment(item, parent, "video", {"start": 0.0, "end": round(duration, 3)})]
    return [Segment(item, parent, "video", {})]


def _spans(provider: Provider, item: VideoItem | AudioItem, parent: int) -> list[Segment]:
    """Segments of ``video_interval`` seconds (at most one request's window) of a file the model clips."""
    start, end = _clip(item)
    step = min(provider.options.media_limits.video_interval, window(provider))
    return [
        Segment(dataclasses.replace(item, start=a, end=b), parent, item.kind, {"start": a, "end": b})
        for a, b in _edges(start, end, step)
    ]


def passages(text: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """``text`` cut at spaces into passages of at most ``limit`` characters."""
    out: list[str] = []
    rest = " ".join(text.split())
    while rest:
        if len(rest) <= limit:
            out.append(rest)
            break
        cut = rest.rfind(" ", 0, limit)
        cut = cut if cut > limit // 2 else limit
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return out


def combine(vectors: list[tuple[Any, float]]) -> Any:
    """The weighted mean of unit vectors, re-normalised (the recombination of every fallback)."""
    import numpy as np

    total = np.zeros(np.asarray(vectors[0][0]).shape, dtype=np.float64)
    for v, w in vectors:
        total += w * np.asarray(v, dtype=np.float64)
    norm = float(np.linalg.norm(total))
    if not math.isfinite(norm) or norm == 0.0:
        raise InputError("the parts' vectors cancel out (their weighted mean is zero)")
    return (total / norm).astype(np.float32)
