"""A corpus of awkward inputs through ``Embedder.embed`` for every provider.

Unusable items raise :class:`mmembed.InputError` naming their position, quickly and without decoding a
decompression bomb; unusual but valid images (CMYK, 16-bit, palette + transparency, animated, EXIF-rotated,
float arrays) embed, and what goes on the wire is upright 8-bit RGB(A) in a format the API accepts.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFile

from conftest import DEFAULT_DIMS, IMAGE_MODELS, IMAGE_PROVIDERS, jpeg_bytes, png_bytes
from mmembed import Embedder, InputError
from mmembed.providers import PROVIDERS as PROVIDER_CLASSES
from mmembed.testing import COLOURS, Emulator, colour_photo


def accepted(name: str) -> frozenset[str]:
    """The upload formats of a provider's default model family."""
    cls = PROVIDER_CLASSES[name]
    return cls.hosting_for(cls.default_model).family.image_formats


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` RGB pixels (900 MP by default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)  # a start of scanlines; the rest would be zeros, a classic bomb
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<rect width="64" height="64" fill="red"/></svg>'
)
GOOD_JPEG = jpeg_bytes(colour_photo("green", size=(120, 90), seed=1))

BAD: dict[str, tuple[object, str]] = {
    "truncated jpeg": (GOOD_JPEG[: len(GOOD_JPEG) // 2], "truncated or corrupt JPEG"),
    "empty bytes": (b"", "empty bytes"),
    "text posing as an image": (b"Hello! I am a plain text file, honest.\n" * 20, "not a decodable image"),
    "svg": (SVG, "SVG is not supported"),
    "decompression bomb": (bomb_png(), "900 MP, over the 40 MP cap"),
    "bomb under pillow's limit": (bomb_png(8_000, 8_000), "64 MP, over the 40 MP cap"),
    "1-d array": (np.linspace(0, 1, 48), "not an image"),
    "None": (None, "cannot embed an object of type NoneType"),
}


def good_items() -> list[object]:
    return ["a red square", GOOD_JPEG, np.asarray(colour_photo("blue", size=(64, 48))), "the blue sea", GOOD_JPEG]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image Pillow decodes in this process (our pipeline and the emulator's)."""
    sizes: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return sizes


def test_the_decode_spy_sees_decodes(embedder_for: Callable[..., Embedder], loads: list[tuple[int, int]]) -> None:
    embedder_for("jina").embed([GOOD_JPEG])
    assert (120, 90) in loads  # so an empty list in the test below means "nothing huge was decoded"


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_item_raises_input_error_with_its_index(
    case: str, provider: str, embedder_for: Callable[..., Embedder], loads: list[tuple[int, int]]
) -> None:
    bad, message = BAD[case]
    items = good_items()
    position = 3
    items.insert(position, bad)
    embedder = embedder_for(provider, requests_per_minute=1e6)
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        embedder.embed(items)
    assert time.monotonic() - started < 1.0
    assert info.value.index == position
    assert f"item {position}" in str(info.value)
    assert message in str(info.value)
    assert all(w * h < 10_000_000 for w, h in loads), "a huge image was decoded"


# -- unusual but valid images ----------------------------------------------------------------------------


def cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    colour_photo("red", size=(160, 120)).convert("CMYK").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def grey16_png() -> bytes:
    ramp = np.linspace(0, 65535, 160 * 120).reshape(120, 160).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    return png_bytes(image)


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (160, 120), 0)
    image.putpalette([215, 35, 35, 35, 80, 205] + [0, 0, 0] * 254)
    for x in range(80, 160):
        for y in range(120):
            image.putpixel((x, y), 1)
    image.info["transparency"] = 1  # the blue half is transparent
    data = png_bytes(image)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and "transparency" in check.info
    return data


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (160, 120), COLOURS[c]) for c in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(buf.getvalue())) as check:
        assert check.n_frames == 3
    return buf.getvalue()


def upright_photo() -> Image.Image:
    """120 wide x 240 tall: red top half, blue bottom half."""
    image = Image.new("RGB", (120, 240), COLOURS["red"])
    image.paste(Image.new("RGB", (120, 120), COLOURS["blue"]), (0, 120))
    return image


def exif_rotated_jpeg() -> bytes:
    """The upright photo stored lying on its side (240x120) with EXIF Orientation 6 (rotate 90° CW to view)."""
    stored = upright_photo().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


VALID: dict[str, Callable[[], object]] = {
    "cmyk jpeg": cmyk_jpeg,
    "16-bit grey png": grey16_png,
    "palette png with transparency": palette_png_with_transparency,
    "animated gif": animated_gif,
    "exif-rotated jpeg": exif_rotated_jpeg,
    "float32 array in [0, 1]": lambda: np.asarray(colour_photo("red", size=(80, 60)), np.float32) / 255,
    "float64 grey array in [0, 1]": lambda: np.linspace(0.0, 1.0, 60 * 80).reshape(60, 80),
    "float32 rgba array in [0, 1]": lambda: np.full((60, 80, 4), 0.5, np.float32),
}


DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,([A-Za-z0-9+/=]+)")


def uploaded_images(emulator: Emulator) -> list[bytes]:
    """Every image the emulator received, in arrival order, whatever the provider's wire format."""
    out: list[bytes] = []
    for request in emulator.requests:
        out += [data for name, _, _, data in request.files if name == "images"]
        body = request.json if isinstance(request.json, dict) else {}
        out += [base64.b64decode(i["image"]) for i in body.get("input", []) if isinstance(i, dict) and "image" in i]
        # Self-hosted servers: data URIs in input strings (bare, or in <img src='…'/>) and chat messages.
        strings = [i for i in body.get("input", []) if isinstance(i, str)] + [json.dumps(body.get("messages"))]
        out += [base64.b64decode(m) for text in strings for m in DATA_URI.findall(text)]
        for instance in body.get("instances", []):
            if "image" in instance:
                out.append(base64.b64decode(instance["image"]["bytesBase64Encoded"]))
        for entry in body.get("inputs", []):  # Voyage and Cohere: typed content segments, data URIs
            for segment in entry["content"]:
                uri = segment.get("image_base64") or (segment.get("image_url") or {}).get("url")
                if uri:
                    out.append(base64.b64decode(uri.split(",", 1)[1]))
        for entry in body.get("requests", []):  # Gemini: one content per request, inlineData parts
            for part in entry["content"]["parts"]:
                if "inlineData" in part:
                    out.append(base64.b64decode(part["inlineData"]["data"]))
        image = body.get("singleEmbeddingParams", {}).get("image")  # Bedrock Nova
        if image:
            out.append(base64.b64decode(image["source"]["bytes"]))
        if body.get("input_type") == "image":  # Twelve Labs
            out.append(base64.b64decode(body["image"]["media_source"]["base64_string"]))
    return out


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
@pytest.mark.parametrize("case", list(VALID))
def test_unusual_images_embed(
    case: str, provider: str, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    image = VALID[case]()
    vectors = embedder_for(provider, requests_per_minute=1e6).embed(["a caption", image])
    assert vectors.shape == (2, DEFAULT_DIMS[provider])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    (data,) = uploaded_images(mmembed_emulator)
    with Image.open(io.BytesIO(data)) as sent:
        assert sent.format in accepted(provider)
        assert sent.mode in ("RGB", "RGBA", "L")
        assert getattr(sent, "n_frames", 1) == 1
        assert sent.getexif().get(0x0112, 1) == 1  # nothing left for the server to rotate
        sent.load()
        pixels = np.asarray(sent.convert("RGB"), np.float64)
    if case in ("cmyk jpeg", "animated gif"):  # red photo / red first frame
        red, green, blue = pixels.reshape(-1, 3).mean(axis=0)
        assert red > 150 and green < 90 and blue < 90


@pytest.mark.parametrize("provider", IMAGE_PROVIDERS)
def test_exif_rotated_jpeg_is_uploaded_upright(
    provider: str, embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    vectors = embedder_for(provider, requests_per_minute=1e6).embed(["caption", exif_rotated_jpeg()])
    (data,) = uploaded_images(mmembed_emulator)
    with Image.open(io.BytesIO(data)) as sent:
        # Portrait, as a viewer shows it (Twelve Labs takes no side under 128 px: enlarged to 128x256).
        assert sent.size == ((128, 256) if provider == "twelvelabs" else (120, 240))
        pixels = np.asarray(sent.convert("RGB").resize((120, 240)), np.float64)
    top, bottom = pixels[:100].reshape(-1, 3).mean(axis=0), pixels[140:].reshape(-1, 3).mean(axis=0)
    assert top[0] > 150 and top[2] < 90  # red on top
    assert bottom[2] > 150 and bottom[0] < 90  # blue below
    # And the vector is the emulator's answer for exactly those upright pixels.
    expected = mmembed_emulator.vector(provider, IMAGE_MODELS[provider], image=data)
    assert float(vectors[1] @ expected) > 0.9999
