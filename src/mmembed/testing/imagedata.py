"""Getting uploaded pictures into Pillow: base64 and data URIs, loopback URL fetches, decoding, RGB conversion."""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ImageDataError", "decode_base64", "decode_image", "fetch_url", "load_image", "to_rgb"]

FETCH_TIMEOUT = 5.0
MAX_FETCH_BYTES = 64 * 1024 * 1024


class ImageDataError(ValueError):
    """An image the emulator cannot use; the message is what the endpoint answers (with a 400)."""


def decode_base64(text: str) -> bytes:
    """Bytes of a base64 string; a ``data:…;base64,`` prefix and line breaks are tolerated."""
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise ImageDataError("malformed data URI")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDataError(f"invalid base64 image data: {exc}") from None


def decode_image(data: bytes) -> Image.Image:
    """A fully loaded Pillow image of ``data`` (its first frame); ImageDataError when it is not a picture."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression-bomb warning is not the emulator's business
            image = Image.open(io.BytesIO(data))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDataError(f"cannot decode image ({len(data)} bytes): {exc}") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """First frame, EXIF-oriented, transparency flattened onto white, as 8-bit RGB."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode in {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}:
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        scaled = values * (255.0 / peak) if peak > 255 else values
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect could leave loopback; the emulator stays offline


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def fetch_url(url: str) -> bytes:
    """Download ``url`` the way the real servers would — but only from loopback hosts (the emulator is offline)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImageDataError(f"not an http(s) URL: {url[:200]!r}")
    if not _is_loopback(parts.hostname):
        raise ImageDataError(f"the emulator only fetches images from loopback hosts, not {parts.hostname!r}")
    try:
        with _OPENER.open(url, timeout=FETCH_TIMEOUT) as response:
            data: bytes = response.read(MAX_FETCH_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ImageDataError(f"could not fetch {url[:200]!r}: {exc}") from None
    if len(data) > MAX_FETCH_BYTES:
        raise ImageDataError(f"image at {url[:200]!r} is larger than {MAX_FETCH_BYTES} bytes")
    return data


def load_image(data: bytes, formats: frozenset[str], where: str) -> Image.Image:
    """Decode ``data`` and insist its format is one of ``formats`` (Pillow names; MPO counts as JPEG)."""
    image = decode_image(data)
    kind = "JPEG" if image.format == "MPO" else (image.format or "unknown")
    if kind not in formats:
        allowed = ", ".join(sorted(formats))
        raise ImageDataError(f"{where}: unsupported image format {kind}; supported formats are {allowed}")
    return image
