"""Turn one image the caller gave into the compact bytes we upload to an embedding API, safely.

The pipeline, for bytes and paths::

    open (format allowlist, pixel cap read from the header, nothing decoded yet)
    → first frame → full decode (a truncated file is an error, not a grey band)
    → EXIF orientation → RGB or RGBA → shrink the shortest side to what the model sees
    → JPEG when opaque (WebP for an API that takes no JPEG), PNG when transparency is really used

Decisions worth knowing:

* **Transparency.** The output is RGBA only when some pixel has alpha < 255. In an RGBA output every
  fully transparent pixel gets the colour white (255, 255, 255, 0): a server that naively drops the alpha
  channel then sees what an image viewer shows on a white page, not the black or garbage RGB that editors
  leave under transparent areas. When the API accepts JPEG but not PNG, transparent images are composited
  on white.
* **Pass-through.** Bytes or a path are uploaded untouched (``passthrough=True``) when nothing would
  change: a format the API accepts, one frame, no EXIF rotation, mode RGB/L/RGBA, shortest side already
  at most ``min_side``, a clean full decode, and no more bytes than raw pixels would take (a tiny image
  carrying megabytes of metadata is re-encoded). Re-encoded images carry no metadata (no EXIF, no GPS).
* **Encoding.** What the model sees is the upload after *its own* resize (e.g. shortest side 512
  and a centre crop, or 224, or a 512x512 square), so bytes beyond what survives that resize are wasted. JPEG at
  quality 85 with 4:2:0 chroma and optimised Huffman tables is a third smaller than JPEG at 90 and moves the
  model's input by under 0.5 dB PSNR. WebP (method 4) would halve the bytes again but costs ~10x the CPU
  time to encode (about 1 dB, too), which is what bounds a large ingest. The figures, and the tolerance
  they are held to, are in ``benchmarks/fidelity.py`` and the README.
* **Errors.** Every failure is an :class:`~mmembed.errors.InputError` without an index; the caller places
  it with ``.at(index, source)``. Pillow's exceptions never escape, and neither does its
  ``DecompressionBombWarning``: ``Image.open`` runs with that warning silenced (under a lock, since
  warning filters are process-wide) and our own, lower cap is checked from the header right after.
* **Truncation** is detected because we fully decode with Pillow's default
  ``ImageFile.LOAD_TRUNCATED_IMAGES = False``; we never change that process-wide flag.
"""

from __future__ import annotations

import functools
import io
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageFile, ImageOps

from .errors import ConfigurationError, InputError

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "EncodedImage",
    "ImageSpec",
    "RawImage",
    "array_to_image",
    "open_image",
    "prepare_image",
    "target_size",
]

RawImage: TypeAlias = bytes | Path | Image.Image | npt.NDArray[Any]

#: Pixel cap checked from the header before decoding; well below Pillow's own bomb limit (~89 MP).
DEFAULT_MAX_PIXELS = 40_000_000

#: Formats we agree to decode. MPO (a JPEG with extra frames) is reached through Pillow's JPEG opener.
ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
_OPENERS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_NOT_AN_IMAGE = "not a decodable image (JPEG, PNG, WebP, GIF, BMP, TIFF accepted)"

_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_PASSTHROUGH_MODES = frozenset({"RGB", "L", "RGBA"})
_PASSTHROUGH_SLACK = 64 * 1024  # bytes of headers/metadata tolerated on top of raw RGBA size
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_TRANSPARENT_LUT = [255] + [0] * 255  # alpha → mask: 255 exactly where alpha == 0
_REDUCING_GAP = 2.0  # box-reduce first when shrinking a lot (Pillow: indistinguishable in most cases)
_PNG_COMPRESS_LEVEL = 6
_WEBP_METHOD = 4  # libwebp's effort, 0-6: 4 is its default; 6 saves ~2 % more bytes for 2x the time
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageSpec:
    """What a model wants: the shortest side it sees, and the upload formats its API accepts."""

    min_side: int
    formats: frozenset[str]  # Pillow format names, e.g. {"JPEG", "PNG", "WEBP"}
    jpeg_quality: int = 85
    webp_quality: int = 85
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int | None = None  # a cap on the longest side too (models that tile large images)

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", frozenset(f.upper() for f in self.formats))
        if self.min_side < 1:
            raise ConfigurationError(f"ImageSpec.min_side must be at least 1, got {self.min_side}")
        if not self.formats:
            raise ConfigurationError("ImageSpec.formats must name at least one upload format")
        for name in ("jpeg_quality", "webp_quality"):
            if not 1 <= getattr(self, name) <= 100:
                raise ConfigurationError(f"ImageSpec.{name} must be in 1..100, got {getattr(self, name)}")
        if self.max_pixels < 1:
            raise ConfigurationError(f"ImageSpec.max_pixels must be at least 1, got {self.max_pixels}")
        if self.max_side is not None and self.max_side < 1:
            raise ConfigurationError(f"ImageSpec.max_side must be at least 1, got {self.max_side}")


@dataclass(frozen=True)
class EncodedImage:
    """Upload-ready bytes with their media type and pixel size."""

    data: bytes = field(repr=False)
    media_type: str
    width: int
    height: int
    passthrough: bool  # True when `data` is the caller's original bytes, untouched


def prepare_image(raw: RawImage, spec: ImageSpec) -> EncodedImage:
    """Decode, orient, convert, shrink and encode one image for an API described by ``spec``.

    >>> spec = ImageSpec(min_side=256, formats=frozenset({"JPEG", "PNG"}))
    >>> out = prepare_image(np.zeros((600, 800, 3), np.uint8), spec)
    >>> out.media_type, out.width, out.height, out.passthrough
    ('image/jpeg', 341, 256, False)
    """
    if isinstance(raw, np.ndarray):
        return _encode(_fit(array_to_image(raw), spec), spec)
    if isinstance(raw, Image.Image):
        return _encode(_fit(_loaded(raw, spec.max_pixels), spec), spec)
    if isinstance(raw, (bytes, bytearray, memoryview, Path)):
        return _prepare_file(_read(raw), spec)
    raise InputError(
        f"cannot use a {type(raw).__name__} as an image (bytes, a Path, a PIL image or a numpy array expected)"
    )


def open_image(raw: bytes | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image lazily: allowlisted format and pixel cap checked from the header, pixels not decoded."""
    data = _read(raw)
    if not data:
        raise InputError("empty image data (0 bytes)")
    try:
        with _bomb_warning_silenced():
            img = Image.open(io.BytesIO(data), formats=_openers())
    except Image.DecompressionBombError as exc:
        raise _bomb_error(exc, max_pixels) from exc
    except Exception as exc:  # Pillow signals unreadable input with many exception types
        raise InputError(_unreadable(data)) from exc
    if img.format not in ALLOWED_FORMATS:
        raise InputError(_NOT_AN_IMAGE)
    _check_pixels(img.size, max_pixels)
    return img


def array_to_image(array: npt.NDArray[Any]) -> Image.Image:
    """An HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array as a PIL image.

    uint8 is used as is, bool becomes 0/255, uint16 is shifted down 8 bits, floats must lie in [0, 1]
    and other integer types in [0, 255].

    >>> array_to_image(np.ones((2, 3, 3))).getpixel((0, 0))
    (255, 255, 255)
    """
    if not isinstance(array, np.ndarray):
        raise InputError(f"expected a numpy array, got {type(array).__name__}")
    shape = array.shape
    if array.ndim == 3 and shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (3, 4))):
        raise InputError(f"array of shape {shape} is not an image (HxW, HxWx1, HxWx3 or HxWx4 expected)")
    if array.size == 0:
        raise InputError(f"array of shape {shape} is empty")
    return Image.fromarray(np.ascontiguousarray(_array_to_uint8(array)))


def target_size(width: int, height: int, min_side: int, max_side: int | None = None) -> tuple[int, int]:
    """The size that brings the shortest side down to ``min_side`` (and the longest to ``max_side``); never upscales.

    >>> target_size(3000, 2000, 512), target_size(2000, 3000, 512), target_size(400, 300, 512)
    ((768, 512), (512, 768), (400, 300))
    >>> target_size(8000, 1000, 768, 2048)
    (2048, 256)
    """
    if width < 1 or height < 1 or min_side < 1:
        raise ValueError(f"sizes must be positive, got {width}x{height} and min_side {min_side}")
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        if round(min(width, height) * scale) < min_side:  # the longest side binds first
            short = max(1, round(min(width, height) * scale))
            return (max_side, short) if width >= height else (short, max_side)
    short = min(width, height)
    if short <= min_side:
        return width, height
    scale = min_side / short
    if width <= height:
        return min_side, max(min_side, round(height * scale))
    return max(min_side, round(width * scale)), min_side


# -- bytes and paths --------------------------------------------------------------------------------------


def _prepare_file(data: bytes, spec: ImageSpec) -> EncodedImage:
    img = open_image(data, max_pixels=spec.max_pixels)
    fmt = img.format or ""
    size = target_size(*img.size, spec.min_side, spec.max_side)
    candidate = size == img.size and fmt in spec.formats and not _is_animated(img)
    if size != img.size:
        img.draft("RGB", size)  # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below `size`
    _load(img)
    if candidate and _unchanged_by_us(img, len(data)):
        return EncodedImage(data, _MEDIA_TYPES[fmt], img.width, img.height, passthrough=True)
    return _encode(_fit(img, spec), spec)


def _read(raw: bytes | bytearray | memoryview | Path) -> bytes:
    if not isinstance(raw, Path):
        return bytes(raw)
    try:
        return raw.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {raw.name!r}: {exc.strerror or exc}") from exc


def _openers() -> list[str]:
    Image.init()  # registers every plugin once; a build without WebP simply lacks that opener
    return [fmt for fmt in _OPENERS if fmt in Image.OPEN]


def _unreadable(data: bytes) -> str:
    if b"<svg" in data[:4096].lower():
        return "SVG is not supported; rasterise it first (JPEG, PNG, WebP, GIF, BMP, TIFF accepted)"
    return _NOT_AN_IMAGE


def _is_animated(img: Image.Image) -> bool:
    with _decoding(img.format):
        return bool(getattr(img, "is_animated", False))


def _unchanged_by_us(img: Image.Image, nbytes: int) -> bool:
    """Would re-encoding change nothing that matters (mode, orientation, size on the wire)?"""
    raw_size = 4 * img.width * img.height + _PASSTHROUGH_SLACK
    return img.mode in _PASSTHROUGH_MODES and _orientation(img) == 1 and nbytes <= raw_size


# -- safety -----------------------------------------------------------------------------------------------


@contextmanager
def _bomb_warning_silenced() -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning; our pixel cap, checked right after, is the guard.

    Warning filters are process-wide, so the change is made under a lock.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


@contextmanager
def _decoding(fmt: str | None) -> Iterator[None]:
    """Turn whatever Pillow raises while decoding into one short InputError."""
    try:
        yield
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # truncation is OSError; corrupt streams raise SyntaxError, ValueError, ...
        raise InputError(f"truncated or corrupt {fmt or 'image'}") from exc


def _load(img: Image.Image) -> None:
    """Decode every pixel of the current frame; a truncated file raises."""
    limit = Image.MAX_IMAGE_PIXELS
    over_pillow_limit = limit is not None and img.width * img.height > limit  # only with a raised cap
    quiet: AbstractContextManager[None] = _bomb_warning_silenced() if over_pillow_limit else nullcontext()
    with quiet, _decoding(img.format):
        img.load()


def _loaded(img: Image.Image, max_pixels: int) -> Image.Image:
    """A caller's PIL image, decoded if it was opened lazily (and then held to the pixel cap)."""
    if isinstance(img, ImageFile.ImageFile) and img.tile:
        _check_pixels(img.size, max_pixels)
        _load(img)
    return img


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(f"image is {width}x{height} = {_mp(width * height)}, over the {_mp(max_pixels)} cap")


def _bomb_error(exc: Image.DecompressionBombError, max_pixels: int) -> InputError:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found[1]) if found else None
    if pixels is not None and pixels > max_pixels:
        return InputError(f"image is {_mp(pixels)}, over the {_mp(max_pixels)} cap")
    return InputError("image is over Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS)")


def _mp(pixels: int) -> str:
    megapixels = pixels / 1e6
    return f"{megapixels:.0f} MP" if megapixels >= 10 else f"{megapixels:.2g} MP"


# -- pixels -----------------------------------------------------------------------------------------------


def _fit(img: Image.Image, spec: ImageSpec) -> Image.Image:
    """Upright, RGB or RGBA, shortest side at most ``spec.min_side``."""
    img = _to_rgb_or_rgba(_upright(img))
    size = target_size(*img.size, spec.min_side, spec.max_side)
    if size != img.size:
        # Bicubic is what CLIP-style preprocessors resize with; with the box pre-reduction it is ~3x cheaper
        # than Lanczos on a big PNG and the model cannot tell the difference at its input size.
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP)
    return _whiten_transparent(img) if img.mode == "RGBA" else img


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # unreadable EXIF: orientation is a nicety, not a reason to refuse a photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(img: Image.Image) -> Image.Image:
    return img if _orientation(img) == 1 else ImageOps.exif_transpose(img)


def _to_rgb_or_rgba(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;"):
        img = _high_depth_to_8bit(img)
    target = "RGBA" if _has_alpha(img) else "RGB"
    try:
        out = img if img.mode == target else img.convert(target)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot convert a {img.mode} image to {target}") from exc
    if target == "RGBA" and out.getchannel("A").getextrema()[0] == 255:
        return out.convert("RGB")  # an alpha channel that is opaque everywhere is not transparency
    return out


def _has_alpha(img: Image.Image) -> bool:
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return True
    return img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA"


def _high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """I;16 by a shift of 8 bits; I and F by the smallest usual range that holds them (F: [0, 1] first)."""
    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        return Image.fromarray((values >> 8).astype(np.uint8))
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    high = float(values.max())
    ranges = (1.0, 255.0, 65535.0) if img.mode == "F" else (255.0, 65535.0)
    full = next((r for r in ranges if high <= r), high)
    return Image.fromarray(np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8))


def _whiten_transparent(img: Image.Image) -> Image.Image:
    """Fully transparent pixels become white, so dropping alpha shows what a viewer shows on white."""
    mask = img.getchannel("A").point(_TRANSPARENT_LUT)
    return Image.composite(Image.new("RGBA", img.size, (255, 255, 255, 0)), img, mask)


def _array_to_uint8(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "b":
        return np.where(array, 255, 0).astype(np.uint8)
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if kind in ("i", "u"):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InputError(
                f"{array.dtype} array values must be in [0, 255] (or use uint8, uint16, or floats in [0, 1]);"
                f" got [{low}, {high}]"
            )
        return array.astype(np.uint8)
    if kind == "f":
        return _unit_floats_to_uint8(array)
    raise InputError(f"unsupported array dtype {array.dtype} (uint8, uint16, bool or floats in [0, 1] expected)")


def _unit_floats_to_uint8(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"{array.dtype} array contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"float array values must be in [0, 1]; got [{low:g}, {high:g}]")
    scaled: npt.NDArray[np.float32] = np.rint(values * np.float32(255.0))
    return scaled.astype(np.uint8)


# -- encoding ---------------------------------------------------------------------------------------------


def _encode(img: Image.Image, spec: ImageSpec) -> EncodedImage:
    fmt = _output_format(img.mode == "RGBA", spec.formats)
    if fmt == "JPEG" and img.mode == "RGBA":  # an API without PNG or WebP: flatten on white
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert("RGB")
    buffer = io.BytesIO()
    if fmt == "WEBP":
        img.save(buffer, "WEBP", quality=spec.webp_quality, method=_WEBP_METHOD)
    elif fmt == "JPEG":
        img.save(buffer, "JPEG", quality=spec.jpeg_quality, subsampling="4:2:0", optimize=True)
    else:
        img.save(buffer, "PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return EncodedImage(buffer.getvalue(), _MEDIA_TYPES[fmt], img.width, img.height, passthrough=False)


def _output_format(transparent: bool, accepted: frozenset[str]) -> str:
    """JPEG for opaque images, PNG where transparency matters; WebP, then the other, if the API takes neither."""
    order: tuple[str, ...] = ("PNG", "WEBP", "JPEG") if transparent else ("JPEG", "WEBP", "PNG")
    for fmt in order:
        if fmt in accepted and (fmt != "WEBP" or _can_write_webp()):
            return fmt
    raise InputError(
        f"the image must be re-encoded, but the API accepts only {', '.join(sorted(accepted))}"
        " and mmembed writes WebP, JPEG or PNG"
    )


@functools.cache
def _can_write_webp() -> bool:
    """Whether this Pillow was built with libwebp (it usually is; without it, JPEG goes instead)."""
    from PIL import features

    return bool(features.check("webp"))
