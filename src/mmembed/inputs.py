"""What an item is: text, an image, a PDF document, a video, an audio clip, or several of them interleaved.

Every public entry point converts what the caller gave into one of a small closed set of internal kinds, here
and nowhere else: :class:`TextItem`, :class:`ImageItem`, :class:`DocumentItem` (a PDF, or a page range of one),
:class:`VideoItem` (optionally a clip: start/end seconds), :class:`AudioItem` and :class:`InterleavedItem`. Each
is a frozen dataclass that describes itself: ``kind``, ``source`` (for errors) and ``content_key()`` (for the
cache). Nothing is decoded at this stage: a ``Path`` or ``bytes`` is recognised from its first bytes (``%PDF-``,
ISO-BMFF ``ftyp``, EBML, ``RIFF…WAVE``, ID3/MPEG frames, Ogg, FLAC; anything else is left to the image decoder),
never from its name. A ``str`` is always text; URLs and ``gs://`` URIs name media only through
:class:`ImageSource` or :class:`MediaSource`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import mimetypes
import pathlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from .errors import InputError, UnsafeURLError
from .media_types import sniff

__all__ = [
    "KINDS",
    "AudioItem",
    "DocumentItem",
    "ImageItem",
    "ImageSource",
    "Interleaved",
    "InterleavedItem",
    "Item",
    "Kind",
    "LeafItem",
    "MediaItem",
    "MediaSource",
    "PageImage",
    "TextItem",
    "VideoItem",
    "from_uri",
    "to_item",
]

Kind = Literal["text", "image", "pdf", "video", "audio", "interleaved"]
KINDS: tuple[Kind, ...] = ("text", "image", "pdf", "video", "audio", "interleaved")
SNIFF_BYTES = 4096  # enough for every signature media_types.sniff knows (an ID3 tag is looked past)


@dataclass(frozen=True)
class ImageSource:
    """An image named by a string: a local path, an http(s) URL, a ``data:`` URI or a ``gs://`` URI.

    A plain ``str`` is always embedded as text; wrap a string in ``ImageSource`` to say it names an image::

        embedder.embed(["a red square", ImageSource("https://example.com/red.jpg")])
    """

    uri: str

    def __post_init__(self) -> None:
        if not isinstance(self.uri, (str, pathlib.PurePath)) or not str(self.uri).strip():
            raise InputError("ImageSource needs a non-empty path or URI string")
        object.__setattr__(self, "uri", str(self.uri).strip())

    @property
    def kind(self) -> str:
        """One of ``"url"``, ``"data"``, ``"gcs"`` or ``"path"``."""
        scheme = urlsplit(self.uri).scheme.lower()
        if scheme in ("http", "https"):
            return "url"
        if scheme == "data":
            return "data"
        if scheme == "gs":
            return "gcs"
        return "path"


@dataclass(frozen=True)
class TextItem:
    """A text to embed."""

    text: str
    kind: ClassVar[Kind] = "text"

    @property
    def source(self) -> str:
        return f"text {_short(repr(self.text), 40)}"

    def content_key(self, file_digest: FileDigest | None = None) -> str:
        return "text:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()


RawImage = bytes | pathlib.Path | Image.Image | np.ndarray
FileDigest = Callable[[pathlib.Path, Callable[[], str]], str]  # (path, compute) -> the file's content digest


@dataclass(frozen=True, eq=False)
class PageImage:
    """Page ``page`` (1-based) of a PDF as an image: rendered only when prepared, at the model's image size."""

    document: DocumentItem
    page: int


@dataclass(frozen=True, eq=False)
class ImageItem:
    """An image to embed: local pixels (``raw``) or a remote reference (``url`` / ``gcs_uri``)."""

    source: str
    raw: RawImage | PageImage | None = None
    url: str | None = None
    gcs_uri: str | None = None
    kind: ClassVar[Kind] = "image"

    def content_key(self, file_digest: FileDigest | None = None) -> str:
        """A key that changes when the image content changes (the URL itself for remote images).

        ``file_digest(path, compute)`` may answer a file's digest from a memo instead of ``compute()``.
        """
        if self.url is not None:
            return "url:" + self.url
        if self.gcs_uri is not None:
            return "gcs:" + self.gcs_uri
        raw = self.raw
        if isinstance(raw, PageImage):
            return f"pdfpage:{raw.document.content_key(file_digest)}:{raw.page}"
        if isinstance(raw, pathlib.Path) and file_digest is not None:
            try:
                return "image:" + file_digest(raw, lambda: _hash_raw(raw))
            except OSError as exc:
                raise InputError(f"cannot read file: {exc.strerror or exc}", source=f"path {raw}") from exc
        return "image:" + _hash_raw(raw)


@dataclass(frozen=True, eq=False)
class MediaItem:
    """A PDF, video or audio file: local bytes or a path (``raw``), or a remote reference (``url``/``gcs_uri``)."""

    source: str
    media_type: str
    raw: bytes | pathlib.Path | None = None
    url: str | None = None
    gcs_uri: str | None = None
    kind: ClassVar[Kind]

    def content_key(self, file_digest: FileDigest | None = None) -> str:
        """The file's content (SHA-256, or the reference itself) plus the range this item covers."""
        if self.url is not None:
            base = "url:" + self.url
        elif self.gcs_uri is not None:
            base = "gcs:" + self.gcs_uri
        elif isinstance(self.raw, pathlib.Path) and file_digest is not None:
            raw = self.raw
            try:
                base = file_digest(raw, lambda: _hash_raw(raw))
            except OSError as exc:
                raise InputError(f"cannot read file: {exc.strerror or exc}", source=f"path {raw}") from exc
        else:
            base = _hash_raw(self.raw)
        return f"{self.kind}:{base}{self.range_key()}"

    def range_key(self) -> str:
        return ""

    def data(self, limit: int) -> bytes:
        """The local bytes of this item, refusing more than ``limit`` (raises InputError)."""
        raw = self.raw
        if isinstance(raw, bytes):
            data = raw
        elif isinstance(raw, pathlib.Path):
            data = _read_media(raw, self.kind, limit)
        else:
            raise InputError(f"{self.kind} item has no local content")
        if len(data) > limit:
            raise InputError(f"{self.kind} is {len(data):,} bytes, over the {limit:,}-byte limit")
        return data


_RECENT_FILES: list[tuple[tuple[str, int, int], bytes]] = []  # the last media files read, newest last
_RECENT_LOCK = threading.Lock()
RECENT_FILES = 2  # the pages of one PDF and the segments of one video are read from disk once, not once each


def _read_media(path: pathlib.Path, kind: str, limit: int) -> bytes:
    """A media file's bytes (at most ``limit``), from a tiny memo keyed by path, size and modification time."""
    try:
        stat = path.stat()
        if stat.st_size > limit:
            raise InputError(
                f"{kind} file is {stat.st_size:,} bytes, over the {limit:,}-byte limit (mmembed.MediaLimits; "
                "a provider that reads gs:// takes larger files from there)"
            )
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with _RECENT_LOCK:
            for known, data in _RECENT_FILES:
                if known == key:
                    return data
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from exc
    with _RECENT_LOCK:
        _RECENT_FILES[:] = [*_RECENT_FILES, (key, data)][-RECENT_FILES:]
    return data


@dataclass(frozen=True, eq=False)
class DocumentItem(MediaItem):
    """A PDF document, or the page range ``pages`` (first, last; 1-based, inclusive) of one."""

    pages: tuple[int, int] | None = None
    kind: ClassVar[Kind] = "pdf"

    def range_key(self) -> str:
        return f":pages={self.pages[0]}-{self.pages[1]}" if self.pages else ""


@dataclass(frozen=True, eq=False)
class VideoItem(MediaItem):
    """A video, or the clip from ``start`` to ``end`` seconds of one (None: from the start / to the end)."""

    start: float | None = None
    end: float | None = None
    kind: ClassVar[Kind] = "video"

    def range_key(self) -> str:
        return "" if self.start is None and self.end is None else f":clip={self.start}-{self.end}"


@dataclass(frozen=True, eq=False)
class AudioItem(MediaItem):
    """An audio recording (MP3, WAV, ...), or the span from ``start`` to ``end`` seconds of one."""

    start: float | None = None
    end: float | None = None
    kind: ClassVar[Kind] = "audio"

    def range_key(self) -> str:
        return "" if self.start is None and self.end is None else f":clip={self.start}-{self.end}"


LeafItem = TextItem | ImageItem | DocumentItem | VideoItem | AudioItem


@dataclass(frozen=True, eq=False)
class InterleavedItem:
    """Several parts that become ONE vector; ``weights`` (one per part) weigh them where they are averaged."""

    parts: tuple[LeafItem, ...]
    weights: tuple[float, ...] | None = None
    kind: ClassVar[Kind] = "interleaved"

    @property
    def source(self) -> str:
        return "interleaved (" + ", ".join(p.kind for p in self.parts) + ")"

    def content_key(self, file_digest: FileDigest | None = None) -> str:
        keys = [p.content_key(file_digest) for p in self.parts]
        if self.weights is not None:
            keys.append("weights=" + ",".join(repr(w) for w in self.weights))
        return "interleaved:" + hashlib.sha256("\x1f".join(keys).encode()).hexdigest()


Item = LeafItem | InterleavedItem
_ITEM_TYPES = (TextItem, ImageItem, DocumentItem, VideoItem, AudioItem, InterleavedItem)
_MediaClass = type[DocumentItem] | type[VideoItem] | type[AudioItem]
_MEDIA_CLASSES: dict[str, _MediaClass] = {"pdf": DocumentItem, "video": VideoItem, "audio": AudioItem}


@dataclass(frozen=True)
class MediaSource:
    """A PDF, video, audio (or image) named by a string or path: a local path, an http(s) URL or a ``gs://`` URI.

    A local file's kind is recognised from its content; a remote one's from ``kind=`` (``"pdf"``, ``"video"``,
    ``"audio"``, ``"image"``), else from its name. ``pages`` (first, last; 1-based) picks a page range of a PDF,
    ``start``/``end`` (seconds) a clip of a video::

        embedder.embed([MediaSource("gs://bucket/talk.mp4", kind="video", start=0, end=30)])
    """

    uri: str
    kind: Literal["pdf", "video", "audio", "image"] | None = None
    media_type: str | None = None
    pages: tuple[int, int] | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.uri, (str, pathlib.PurePath)) or not str(self.uri).strip():
            raise InputError("MediaSource needs a non-empty path or URI string")
        object.__setattr__(self, "uri", str(self.uri).strip())
        if self.kind is not None and self.kind not in ("pdf", "video", "audio", "image"):
            raise InputError(f"MediaSource kind must be 'pdf', 'video', 'audio' or 'image', not {self.kind!r}")
        if self.pages is not None:
            first, last = (*tuple(self.pages), None, None)[:2]
            if not (isinstance(first, int) and isinstance(last, int) and 1 <= first <= last):
                raise InputError(f"pages must be (first, last) with 1 <= first <= last, got {self.pages!r}")
            object.__setattr__(self, "pages", (first, last))
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise InputError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InputError(f"end ({self.end}) must be after start ({self.start})")


@dataclass(frozen=True, init=False)
class Interleaved:
    """Several parts (texts, images, PDFs, audio, video) embedded as ONE vector.

    Providers that take mixed content natively (some any mix of parts, some one text + one image) embed
    it in one request; elsewhere the vector is the mean of the parts' unit vectors, weighted by ``weights`` (equal
    by default) and re-normalised::

        embedder.embed([Interleaved(["a red bicycle", Path("red.jpg")])])
    """

    parts: tuple[object, ...]
    weights: tuple[float, ...] | None

    def __init__(self, parts: Sequence[object], weights: Sequence[float] | None = None) -> None:
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:
            raise InputError("Interleaved needs a non-empty list of parts")
        if weights is not None:
            weights = tuple(float(w) for w in weights)
            if len(weights) != len(parts) or any(not w >= 0 for w in weights) or not sum(weights) > 0:
                raise InputError("Interleaved weights must be one non-negative number per part, not all zero")
        object.__setattr__(self, "parts", tuple(parts))
        object.__setattr__(self, "weights", weights)


def to_item(obj: object) -> Item:
    """Convert one caller object into an internal item; raises :class:`InputError` (without an index)."""
    if isinstance(obj, str):
        return TextItem(obj)
    if isinstance(obj, _ITEM_TYPES):
        return obj
    if isinstance(obj, ImageSource):
        return _from_source(obj)
    if isinstance(obj, MediaSource):
        return _from_media_source(obj)
    if isinstance(obj, Interleaved):
        return _interleaved(obj)
    if isinstance(obj, pathlib.PurePath):
        return _from_path(pathlib.Path(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        if not data:
            raise InputError("empty bytes are not an image", source="bytes (0 B)")
        return _from_bytes(data, f"bytes ({len(data)} B)")
    if isinstance(obj, Image.Image):
        return ImageItem(source=f"PIL image {obj.mode} {obj.width}x{obj.height}", raw=obj)
    if isinstance(obj, np.ndarray):
        return ImageItem(source=f"array {obj.dtype} {'x'.join(map(str, obj.shape))}", raw=obj)
    if isinstance(obj, io.IOBase) and hasattr(obj, "read"):
        data = obj.read()
        if not isinstance(data, bytes) or not data:
            raise InputError("file object gave no bytes", source=type(obj).__name__)
        return _from_bytes(data, f"{type(obj).__name__} ({len(data)} B)")
    raise InputError(
        f"cannot embed an object of type {type(obj).__name__}; pass a str (text), a Path, bytes, "
        "a PIL image, a numpy array, an ImageSource, a MediaSource or an Interleaved",
        source=type(obj).__name__,
    )


def media_kind(media_type: str | None) -> str | None:
    """``"pdf"``, ``"video"`` or ``"audio"`` for a media type of those kinds, else None (images and unknowns)."""
    if media_type is None:
        return None
    if media_type == "application/pdf":
        return "pdf"
    major = media_type.split("/", 1)[0]
    return major if major in ("video", "audio") else None


def _from_bytes(data: bytes, source: str) -> LeafItem:
    media_type = sniff(data[:SNIFF_BYTES] if data[:3] != b"ID3" else data)
    kind = media_kind(media_type)
    if kind is None or media_type is None:
        return ImageItem(source=source, raw=data)  # images, and anything else: the image decoder names it
    return _MEDIA_CLASSES[kind](source=source, media_type=media_type, raw=data)


def _from_path(path: pathlib.Path) -> LeafItem:
    source = f"path {path}"
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
            if head[:3] == b"ID3" and len(head) >= 10:  # an ID3 tag: the audio frames follow it
                fh.seek(0)
                head = fh.read(10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10])) + 64)
    except OSError:
        return ImageItem(source=source, raw=path)  # unreadable: it fails by name when it is keyed
    media_type = sniff(head)
    kind = media_kind(media_type)
    if kind is None or media_type is None:
        return ImageItem(source=source, raw=path)
    return _MEDIA_CLASSES[kind](source=source, media_type=media_type, raw=path)


def _from_media_source(src: MediaSource) -> LeafItem:
    scheme = urlsplit(src.uri).scheme.lower()
    remote = scheme in ("http", "https", "gs")
    if not remote and scheme == "data":
        data = _decode_data_uri(src.uri)
        item: LeafItem = _from_bytes(data, "data URI")
    elif not remote:
        item = _from_path(to_item_path(src.uri))
        if src.kind is not None and src.kind != item.kind and not isinstance(item, ImageItem):
            raise InputError(f"MediaSource says {src.kind} but the file is {item.kind}", source=item.source)
        if src.kind is not None and src.kind not in ("image", item.kind) and isinstance(item, ImageItem):
            raise InputError(f"MediaSource says {src.kind} but the file is not one", source=item.source)
    else:
        item = _remote(src, scheme)
    return _with_range(item, src)


def _remote(src: MediaSource, scheme: str) -> LeafItem:
    guessed, _ = mimetypes.guess_type(urlsplit(src.uri).path)
    media_type = src.media_type or guessed
    kind = src.kind or media_kind(media_type) or ("image" if media_type and media_type.startswith("image/") else None)
    if kind is None:
        raise InputError(
            "cannot tell what this URL holds from its name; pass kind='pdf', 'video', 'audio' or 'image'",
            source=_short(src.uri),
        )
    if kind == "image":
        return _from_source(ImageSource(src.uri))
    media_type = media_type if media_kind(media_type) == kind else _DEFAULT_TYPES[kind]
    url, gcs = (None, src.uri) if scheme == "gs" else (src.uri, None)
    label = f"gs URI {src.uri}" if gcs else f"URL {_short(src.uri)}"
    return _MEDIA_CLASSES[kind](source=label, media_type=str(media_type), url=url, gcs_uri=gcs)


_DEFAULT_TYPES = {"pdf": "application/pdf", "video": "video/mp4", "audio": "audio/mpeg"}


def _with_range(item: LeafItem, src: MediaSource) -> LeafItem:
    import dataclasses

    if src.pages is not None:
        if not isinstance(item, DocumentItem):
            raise InputError("pages= applies to PDF documents only", source=item.source)
        return dataclasses.replace(item, pages=src.pages)
    if src.start is not None or src.end is not None:
        if not isinstance(item, VideoItem):
            raise InputError("start=/end= apply to videos only", source=item.source)
        return dataclasses.replace(item, start=src.start, end=src.end)
    return item


def _interleaved(obj: Interleaved) -> InterleavedItem:
    parts: list[LeafItem] = []
    for i, part in enumerate(obj.parts):
        item = to_item(part)
        if isinstance(item, InterleavedItem):
            raise InputError(f"part {i} of an Interleaved is itself Interleaved; flatten it")
        parts.append(item)
    return InterleavedItem(parts=tuple(parts), weights=obj.weights)


def from_uri(uri: str) -> pathlib.Path | ImageSource | MediaSource:
    """What a URI string names, for adapters that get strings (Chroma ``uris=``, LlamaIndex image paths).

    A local path becomes a ``Path`` (its kind is then read from its content); an http(s)/gs:// URI whose name
    says PDF, video or audio becomes a :class:`MediaSource`, any other an :class:`ImageSource`.
    """
    source = ImageSource(uri)
    if source.kind == "path":
        return to_item_path(source.uri)
    if source.kind == "data":
        return source
    guessed, _ = mimetypes.guess_type(urlsplit(source.uri).path)
    return MediaSource(source.uri) if media_kind(guessed) else source


def to_item_path(uri: str) -> pathlib.Path:
    """A local path from a path string or ``file://`` URI (other URL schemes are refused)."""
    scheme = urlsplit(uri).scheme.lower()
    if "://" in uri and len(scheme) > 1 and scheme != "file":  # one letter: a Windows drive
        raise UnsafeURLError(
            f"unsupported URL scheme {scheme!r}: use http(s), data:, gs:// or a local path", source=_short(uri)
        )
    return pathlib.Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()


def _from_source(src: ImageSource) -> ImageItem:
    kind = src.kind
    if kind == "url":
        return ImageItem(source=f"URL {_short(src.uri)}", url=src.uri)
    if kind == "gcs":
        return ImageItem(source=f"gs URI {src.uri}", gcs_uri=src.uri)
    if kind == "data":
        return ImageItem(source="data URI", raw=_decode_data_uri(src.uri))
    path = to_item_path(src.uri)
    return ImageItem(source=f"path {path}", raw=path)


def _decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or ";base64" not in header.lower():
        raise InputError("data URI must be base64 encoded (data:image/...;base64,...)", source="data URI")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError("data URI payload is not valid base64", source="data URI") from exc
    if not data:
        raise InputError("data URI holds no bytes", source="data URI")
    return data


def file_sha256(path: pathlib.Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MB chunks: an image file's content key (raises OSError)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_raw(raw: RawImage | None) -> str:  # also a media file's (bytes or a path)
    digest = hashlib.sha256()
    if isinstance(raw, bytes):
        digest.update(raw)
    elif isinstance(raw, pathlib.Path):
        try:
            return file_sha256(raw)
        except OSError as exc:
            raise InputError(f"cannot read file: {exc.strerror or exc}", source=f"path {raw}") from exc
    elif isinstance(raw, Image.Image):
        digest.update(f"{raw.mode}:{raw.size}".encode())
        digest.update(raw.tobytes())
    elif isinstance(raw, np.ndarray):
        digest.update(f"{raw.dtype}:{raw.shape}".encode())
        digest.update(np.ascontiguousarray(raw).tobytes())
    return digest.hexdigest()


def _short(uri: str, limit: int = 80) -> str:
    return uri if len(uri) <= limit else uri[: limit - 1] + "…"
