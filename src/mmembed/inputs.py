"""What an item is: a text, or an image from a path, bytes, PIL, an array, a URL, a data URI or gs://.

Every public entry point converts what the caller gave into one of two internal types, :class:`TextItem`
or :class:`ImageItem`, here and nowhere else. Nothing is read or decoded at this stage: an image item
only knows where its pixels are, so a stream of ten thousand paths costs ten thousand small objects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from .errors import InputError, UnsafeURLError

__all__ = ["ImageItem", "ImageSource", "Item", "TextItem", "to_item"]


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

    def content_key(self) -> str:
        return "text:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()


RawImage = bytes | pathlib.Path | Image.Image | np.ndarray
FileDigest = Callable[[pathlib.Path, Callable[[], str]], str]  # (path, compute) -> the file's content digest


@dataclass(frozen=True, eq=False)
class ImageItem:
    """An image to embed: local pixels (``raw``) or a remote reference (``url`` / ``gcs_uri``)."""

    source: str
    raw: RawImage | None = None
    url: str | None = None
    gcs_uri: str | None = None

    def content_key(self, file_digest: FileDigest | None = None) -> str:
        """A key that changes when the image content changes (the URL itself for remote images).

        ``file_digest(path, compute)`` may answer a file's digest from a memo instead of ``compute()``.
        """
        if self.url is not None:
            return "url:" + self.url
        if self.gcs_uri is not None:
            return "gcs:" + self.gcs_uri
        raw = self.raw
        if isinstance(raw, pathlib.Path) and file_digest is not None:
            try:
                return "image:" + file_digest(raw, lambda: _hash_raw(raw))
            except OSError as exc:
                raise InputError(f"cannot read file: {exc.strerror or exc}", source=f"path {raw}") from exc
        return "image:" + _hash_raw(raw)


Item = TextItem | ImageItem


def to_item(obj: object) -> Item:
    """Convert one caller object into an internal item; raises :class:`InputError` (without an index)."""
    if isinstance(obj, str):
        return TextItem(obj)
    if isinstance(obj, (TextItem, ImageItem)):
        return obj
    if isinstance(obj, ImageSource):
        return _from_source(obj)
    if isinstance(obj, pathlib.PurePath):
        return ImageItem(source=f"path {obj}", raw=pathlib.Path(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        if not data:
            raise InputError("empty bytes are not an image", source="bytes (0 B)")
        return ImageItem(source=f"bytes ({len(data)} B)", raw=data)
    if isinstance(obj, Image.Image):
        return ImageItem(source=f"PIL image {obj.mode} {obj.width}x{obj.height}", raw=obj)
    if isinstance(obj, np.ndarray):
        return ImageItem(source=f"array {obj.dtype} {'x'.join(map(str, obj.shape))}", raw=obj)
    if isinstance(obj, io.IOBase) and hasattr(obj, "read"):
        data = obj.read()
        if not isinstance(data, bytes) or not data:
            raise InputError("file object gave no bytes", source=type(obj).__name__)
        return ImageItem(source=f"{type(obj).__name__} ({len(data)} B)", raw=data)
    raise InputError(
        f"cannot embed an object of type {type(obj).__name__}; pass a str (text), a Path, bytes, "
        "a PIL image, a numpy array or an ImageSource",
        source=type(obj).__name__,
    )


def _from_source(src: ImageSource) -> ImageItem:
    kind = src.kind
    if kind == "url":
        return ImageItem(source=f"URL {_short(src.uri)}", url=src.uri)
    if kind == "gcs":
        return ImageItem(source=f"gs URI {src.uri}", gcs_uri=src.uri)
    if kind == "data":
        return ImageItem(source="data URI", raw=_decode_data_uri(src.uri))
    scheme = urlsplit(src.uri).scheme.lower()
    if "://" in src.uri and len(scheme) > 1 and scheme != "file":  # one letter: a Windows drive
        raise UnsafeURLError(
            f"unsupported URL scheme {scheme!r}: use http(s), data:, gs:// or a local path", source=_short(src.uri)
        )
    path = pathlib.Path(src.uri[len("file://") :] if src.uri.startswith("file://") else src.uri).expanduser()
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


def _hash_raw(raw: RawImage | None) -> str:
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
