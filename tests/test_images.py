"""Tests for mmembed.images: every image is generated here, nothing binary is committed."""

from __future__ import annotations

import doctest
import io
import re
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from mmembed import images
from mmembed.errors import ConfigurationError, InputError
from mmembed.images import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    EncodedImage,
    ImageSpec,
    array_to_image,
    open_image,
    prepare_image,
    target_size,
)
from mmembed.testing import colour_photo

NOMIC = ImageSpec(min_side=256, formats=frozenset({"JPEG", "PNG", "WEBP"}))
VERTEX = ImageSpec(min_side=512, formats=frozenset({"JPEG", "PNG"}))
LOSSLESS = ImageSpec(min_side=512, formats=frozenset({"PNG"}))  # exact pixel checks
EVERYTHING = ImageSpec(min_side=512, formats=ALLOWED_FORMATS)

RED, BLUE, WHITE_CLEAR = (255, 0, 0), (0, 0, 255), (255, 255, 255, 0)


# -- helpers ------------------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(out: EncodedImage) -> Image.Image:
    img = Image.open(io.BytesIO(out.data))
    img.load()
    assert (img.width, img.height) == (out.width, out.height)
    assert Image.MIME[img.format or ""] == out.media_type
    return img


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus sensor-like noise (hard to compress, like real photos)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 255 / (width + height)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_declaring(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose IHDR claims width x height (8-bit RGB); its IDAT holds almost nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def near(actual: object, expected: tuple[int, ...], tolerance: int = 8) -> bool:
    assert isinstance(actual, tuple), actual
    return len(actual) == len(expected) and all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def two_colour(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """The left third in one colour, the rest in another."""
    img = Image.new("RGB", (width, height), right)
    img.paste(left, (0, 0, width // 3, height))
    return img


def animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (40, 30), RED), Image.new("RGB", (40, 30), BLUE)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


# -- target_size ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "min_side", "expected"),
    [
        ((3000, 2000), 512, (768, 512)),
        ((2000, 3000), 512, (512, 768)),
        ((4000, 4000), 256, (256, 256)),
        ((1000, 700), 256, (366, 256)),  # the official nomic client does not shrink this one at all
        ((400, 300), 512, (400, 300)),  # never upscale
        ((512, 9000), 512, (512, 9000)),
        ((100000, 513), 512, (99805, 512)),
    ],
)
def test_target_size(size: tuple[int, int], min_side: int, expected: tuple[int, int]) -> None:
    assert target_size(*size, min_side) == expected


def test_target_size_shortest_side_is_min_side_and_never_grows() -> None:
    rng = np.random.default_rng(1)
    for width, height, min_side in rng.integers(1, 6000, size=(500, 3)):
        w, h = target_size(int(width), int(height), int(min_side))
        assert w <= width and h <= height
        assert min(w, h) == min(min_side, width, height)


def test_target_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        target_size(0, 10, 5)


# -- downscaling, speed, size on the wire ---------------------------------------------------------------------


def test_big_photo_is_drafted_shrunk_and_small(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(photo(3000, 2000), "JPEG", quality=90)
    assert len(data) > 2_000_000  # realistic: noise keeps the source big
    drafts: list[object] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        drafts.append(size)
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    started = time.perf_counter()
    out = prepare_image(data, VERTEX)
    elapsed = time.perf_counter() - started

    assert drafts == [(768, 512)]
    assert (out.width, out.height, out.media_type, out.passthrough) == (768, 512, "image/jpeg", False)
    assert len(out.data) < 400_000
    assert decode(out).mode == "RGB"
    assert elapsed < 1.0  # ~60 ms measured on a 2-core box; generous bound against noisy CI


def test_big_png_is_shrunk_to_jpeg_with_its_colours() -> None:
    source = Image.new("RGB", (1600, 1200), BLUE)
    source.paste(RED, (0, 0, 800, 1200))
    out = prepare_image(encode(source, "PNG"), NOMIC)
    img = decode(out)
    assert (out.width, out.height, out.media_type) == (341, 256, "image/jpeg")
    assert near(img.getpixel((10, 128)), RED)
    assert near(img.getpixel((330, 128)), BLUE)


def test_portrait_keeps_its_aspect() -> None:
    out = prepare_image(encode(photo(1000, 2000), "JPEG"), VERTEX)
    assert (out.width, out.height) == (512, 1024)


def test_small_image_is_never_upscaled() -> None:
    out = prepare_image(encode(Image.new("CMYK", (100, 80)), "JPEG"), VERTEX)
    assert (out.width, out.height, out.passthrough) == (100, 80, False)


# -- EXIF orientation -----------------------------------------------------------------------------------------


def rotated_jpeg() -> bytes:
    """A 300x100 image stored sideways: red on the left, blue elsewhere, EXIF orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(two_colour(300, 100, RED, BLUE), "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_before_upload() -> None:
    out = prepare_image(rotated_jpeg(), ImageSpec(min_side=50, formats=frozenset({"JPEG"})))
    img = decode(out)
    assert (out.width, out.height, out.passthrough) == (50, 150, False)
    assert all(near(img.getpixel((x, 0)), RED, 12) for x in range(50))  # what was on the left is on top
    assert near(img.getpixel((25, 149)), BLUE, 12)
    assert 0x0112 not in img.getexif()  # re-encoded images carry no metadata


def test_pil_image_carrying_exif_is_oriented() -> None:
    lazy = Image.open(io.BytesIO(rotated_jpeg()))
    img = decode(prepare_image(lazy, ImageSpec(min_side=50, formats=frozenset({"PNG"}))))
    assert img.size == (50, 150)
    assert near(img.getpixel((25, 0)), RED, 12)


def test_pil_image_without_exif_is_left_as_drawn() -> None:
    img = decode(prepare_image(two_colour(300, 100, RED, BLUE), ImageSpec(min_side=50, formats=frozenset({"PNG"}))))
    assert img.size == (150, 50)
    assert img.getpixel((0, 25)) == RED


# -- modes ----------------------------------------------------------------------------------------------------


def rgba_with_holes() -> Image.Image:
    """Green, with a fully transparent black left column and a half-transparent red pixel."""
    img = Image.new("RGBA", (8, 8), (0, 128, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 1, 8))
    img.putpixel((4, 4), (200, 0, 0, 128))
    return img


def palette(transparent: bool) -> Image.Image:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    if transparent:
        img.info["transparency"] = 0
    return img


def grey(value: int) -> tuple[int, int, int]:
    return (value, value, value)


def from_array(values: list[list[float]], dtype: type) -> Image.Image:
    return Image.fromarray(np.array(values, dtype=dtype))


# (name, builder, container for the bytes route, expected mode, {pixel: colour})
MODE_CASES: list[tuple[str, Callable[[], Image.Image], str, str, dict[tuple[int, int], tuple[int, ...]]]] = [
    ("RGB", lambda: Image.new("RGB", (8, 8), (10, 20, 30)), "TIFF", "RGB", {(0, 0): (10, 20, 30)}),
    ("L", lambda: Image.new("L", (8, 8), 77), "TIFF", "RGB", {(0, 0): (77, 77, 77)}),
    ("1", lambda: Image.new("1", (8, 8), 1), "PNG", "RGB", {(0, 0): (255, 255, 255)}),
    ("P", lambda: palette(False), "PNG", "RGB", {(0, 0): (0, 0, 0), (1, 1): RED}),
    ("P+transparency", lambda: palette(True), "PNG", "RGBA", {(0, 0): WHITE_CLEAR, (1, 1): (*RED, 255)}),
    (
        "RGBA",
        rgba_with_holes,
        "TIFF",
        "RGBA",
        {(0, 3): WHITE_CLEAR, (5, 5): (0, 128, 0, 255), (4, 4): (200, 0, 0, 128)},
    ),
    ("RGBA opaque", lambda: Image.new("RGBA", (8, 8), (1, 2, 3, 255)), "TIFF", "RGB", {(0, 0): (1, 2, 3)}),
    ("LA", lambda: rgba_with_holes().convert("LA"), "TIFF", "RGBA", {(0, 3): WHITE_CLEAR, (5, 5): (*grey(75), 255)}),
    ("CMYK", lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "TIFF", "RGB", {(0, 0): RED}),
    (
        "I;16",
        lambda: from_array([[0, 32768, 65535]], np.uint16),
        "PNG",
        "RGB",
        {(0, 0): grey(0), (1, 0): grey(128), (2, 0): grey(255)},
    ),
    (
        "I 16-bit range",
        lambda: from_array([[0, 32896, 65535]], np.int32),
        "TIFF",
        "RGB",
        {(1, 0): grey(128), (2, 0): grey(255)},
    ),
    (
        "I 8-bit range",
        lambda: from_array([[-5, 100, 255]], np.int32),
        "TIFF",
        "RGB",
        {(0, 0): grey(0), (1, 0): grey(100)},
    ),
    (
        "F in [0, 1]",
        lambda: from_array([[0.0, 0.5, 1.0]], np.float32),
        "TIFF",
        "RGB",
        {(1, 0): grey(128), (2, 0): grey(255)},
    ),
    ("F in [0, 255]", lambda: from_array([[0.0, 100.0, 255.0]], np.float32), "TIFF", "RGB", {(1, 0): grey(100)}),
    (
        "F large",
        lambda: from_array([[0.0, 5e5, 1e6]], np.float32),
        "TIFF",
        "RGB",
        {(1, 0): grey(128), (2, 0): grey(255)},
    ),
]


@pytest.mark.parametrize(("name", "build", "container", "mode", "pixels"), MODE_CASES, ids=[c[0] for c in MODE_CASES])
@pytest.mark.parametrize("route", ["pil", "bytes"])
def test_every_mode_becomes_rgb_or_rgba(
    name: str,
    build: Callable[[], Image.Image],
    container: str,
    mode: str,
    pixels: dict[tuple[int, int], tuple[int, ...]],
    route: str,
) -> None:
    raw = build() if route == "pil" else encode(build(), container)
    out = prepare_image(raw, LOSSLESS)
    img = decode(out)
    assert (out.media_type, out.passthrough, img.mode) == ("image/png", False, mode)
    for xy, colour in pixels.items():
        assert img.getpixel(xy) == colour, (name, xy)


def test_opaque_output_is_jpeg_and_transparent_output_is_png() -> None:
    opaque = prepare_image(palette(False), NOMIC)
    clear = prepare_image(palette(True), NOMIC)
    assert (opaque.media_type, decode(opaque).mode) == ("image/jpeg", "RGB")
    assert (clear.media_type, decode(clear).mode) == ("image/png", "RGBA")


def test_transparency_survives_downscaling_with_white_under_clear_pixels() -> None:
    img = Image.new("RGBA", (1024, 1024), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (512, 0, 1024, 1024))
    out = decode(prepare_image(encode(img, "PNG"), NOMIC))
    assert out.size == (256, 256) and out.mode == "RGBA"
    assert out.getpixel((10, 10)) == WHITE_CLEAR
    assert out.getpixel((250, 10)) == (0, 0, 255, 255)


def test_callers_pil_image_is_not_modified() -> None:
    img = rgba_with_holes()
    prepare_image(img, LOSSLESS)
    assert img.getpixel((0, 0)) == (0, 0, 0, 0)


# -- animations -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_uploads_its_first_frame(fmt: str) -> None:
    data = animation(fmt)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = prepare_image(data, EVERYTHING)  # every format accepted, still never passed through
    img = decode(out).convert("RGB")
    assert (out.passthrough, out.media_type, img.size) == (False, "image/jpeg", (40, 30))
    assert near(img.getpixel((20, 15)), RED)


# -- pass-through ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "media_type"),
    [
        ("JPEG", "RGB", "image/jpeg"),
        ("JPEG", "L", "image/jpeg"),
        ("PNG", "RGBA", "image/png"),
        ("WEBP", "RGB", "image/webp"),
    ],
)
def test_small_accepted_image_is_passed_through_untouched(fmt: str, mode: str, media_type: str) -> None:
    data = encode(photo(256, 200).convert(mode), fmt)
    out = prepare_image(data, NOMIC)
    assert out == EncodedImage(data, media_type, 256, 200, passthrough=True)


def test_path_is_passed_through_untouched(tmp_path: Path) -> None:
    data = encode(photo(120, 90), "JPEG")
    path = tmp_path / "small.jpg"
    path.write_bytes(data)
    assert prepare_image(path, VERTEX) == EncodedImage(data, "image/jpeg", 120, 90, passthrough=True)


def bloated_png() -> bytes:
    plain = encode(Image.new("RGB", (16, 16), RED), "PNG")
    return plain[:33] + png_chunk(b"tEXt", b"Comment\x00" + b"x" * 200_000) + plain[33:]


@pytest.mark.parametrize(
    ("data", "spec"),
    [
        pytest.param(encode(photo(200, 200), "WEBP"), VERTEX, id="webp-for-vertex"),
        pytest.param(encode(photo(900, 600), "JPEG"), VERTEX, id="needs-downscale"),
        pytest.param(rotated_jpeg(), VERTEX, id="exif-rotated"),
        pytest.param(encode(Image.new("CMYK", (64, 64)), "JPEG"), VERTEX, id="cmyk"),
        pytest.param(encode(palette(False), "PNG"), VERTEX, id="palette-png"),
        pytest.param(encode(Image.new("I;16", (64, 64)), "PNG"), VERTEX, id="16-bit-png"),
        pytest.param(animation("PNG"), VERTEX, id="apng"),
        pytest.param(bloated_png(), VERTEX, id="megabytes-of-metadata"),
        pytest.param(encode(photo(64, 64), "BMP"), VERTEX, id="bmp-not-accepted"),
    ],
)
def test_re_encoded_when_upload_would_differ(data: bytes, spec: ImageSpec) -> None:
    out = prepare_image(data, spec)
    assert out.passthrough is False
    assert out.data != data
    assert out.media_type in {"image/jpeg", "image/png"}


def test_vertex_webp_becomes_jpeg_with_the_same_picture() -> None:
    out = prepare_image(encode(Image.new("RGB", (200, 100), RED), "WEBP", lossless=True), VERTEX)
    assert (out.media_type, out.width, out.height) == ("image/jpeg", 200, 100)
    assert near(decode(out).getpixel((100, 50)), RED)


# -- upload format fallbacks ----------------------------------------------------------------------------------


def test_transparent_image_for_a_jpeg_only_api_is_flattened_on_white() -> None:
    source = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # black under the transparent half
    source.paste((0, 128, 0, 255), (32, 0, 64, 64))
    out = prepare_image(source, ImageSpec(min_side=512, formats=frozenset({"JPEG"})))
    img = decode(out)
    assert (out.media_type, img.mode) == ("image/jpeg", "RGB")
    assert near(img.getpixel((8, 32)), (255, 255, 255))
    assert near(img.getpixel((56, 32)), (0, 128, 0))


def test_opaque_image_for_a_png_only_api_is_png() -> None:
    out = prepare_image(photo(600, 600), ImageSpec(min_side=300, formats=frozenset({"png"})))
    assert (out.media_type, out.width, decode(out).mode) == ("image/png", 300, "RGB")


def test_webp_only_api_takes_webp_untouched_and_gets_webp_when_re_encoded() -> None:
    webp_only = ImageSpec(min_side=512, formats=frozenset({"WEBP"}))
    small_webp = encode(photo(64, 64), "WEBP")
    assert prepare_image(small_webp, webp_only).passthrough is True
    out = prepare_image(encode(photo(64, 64), "JPEG"), webp_only)
    assert (out.media_type, out.passthrough, decode(out).size) == ("image/webp", False, (64, 64))
    clear = prepare_image(rgba_with_holes(), webp_only)
    assert (clear.media_type, decode(clear).mode) == ("image/webp", "RGBA")
    with pytest.raises(InputError, match="accepts only GIF"):
        prepare_image(encode(photo(64, 64), "JPEG"), ImageSpec(min_side=512, formats=frozenset({"GIF"})))


# -- refusals -------------------------------------------------------------------------------------------------


def truncated(fmt: str, size: tuple[int, int]) -> bytes:
    data = encode(photo(*size), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"", "empty image data", id="empty"),
        pytest.param(b"hello, I am plain text posing as a JPEG\n" * 3, "not a decodable image", id="text"),
        pytest.param(
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
            "SVG is not supported",
            id="svg",
        ),
        pytest.param(encode(photo(32, 32), "PPM"), "not a decodable image", id="ppm-not-allowlisted"),
        pytest.param(encode(photo(32, 32), "ICO"), "not a decodable image", id="ico-not-allowlisted"),
        pytest.param(truncated("JPEG", (200, 150)), "truncated or corrupt JPEG", id="truncated-small-jpeg"),
        pytest.param(truncated("JPEG", (2400, 1600)), "truncated or corrupt JPEG", id="truncated-drafted-jpeg"),
        pytest.param(truncated("PNG", (200, 150)), "truncated or corrupt PNG", id="truncated-png"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a decodable image", id="png-signature-only"),
        pytest.param(png_declaring(64, 64), "truncated or corrupt PNG", id="png-with-too-little-data"),
        pytest.param("photo.jpg", "cannot use a str as an image", id="str"),
    ],
)
def test_bad_input_raises_a_short_input_error(raw: bytes, message: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(InputError, match=message) as caught:
        prepare_image(raw, VERTEX)
    assert caught.value.index is None
    assert caught.value.at(3, "photo.jpg").args[0].startswith("item 3 photo.jpg: ")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read 'nope.png': No such file"):
        prepare_image(tmp_path / "nope.png", VERTEX)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (30000, 30000, "image is 900 MP, over the 40 MP cap"),  # past Pillow's hard limit: its error, reworded
        (10000, 10000, "image is 10000x10000 = 100 MP, over the 40 MP cap"),  # Pillow only warns: silenced
        (8000, 6000, "image is 8000x6000 = 48 MP, over the 40 MP cap"),  # under Pillow's limits: ours
    ],
)
def test_pixel_bomb_is_refused_from_its_header_in_milliseconds(width: int, height: int, message: str) -> None:
    data = png_declaring(width, height)
    filters_before = list(warnings.filters)
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        prepare_image(data, NOMIC)
    assert time.perf_counter() - started < 0.5
    assert str(caught.value) == message
    assert type(caught.value.__cause__) in {type(None), Image.DecompressionBombError}
    assert warnings.filters == filters_before  # our temporary silencing left no trace


def test_threads_share_the_module_safely() -> None:
    jobs = [png_declaring(10000, 10000), encode(photo(900, 600), "JPEG"), png_declaring(30000, 30000)] * 8
    filters_before = list(warnings.filters)

    def run(data: bytes) -> str:
        try:
            return str(prepare_image(data, NOMIC).width)
        except InputError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs))
    assert (
        results
        == ["image is 10000x10000 = 100 MP, over the 40 MP cap", "384", "image is 900 MP, over the 40 MP cap"] * 8
    )
    assert warnings.filters == filters_before


def test_cap_comes_from_the_spec() -> None:
    tiny_cap = ImageSpec(min_side=512, formats=frozenset({"JPEG"}), max_pixels=1000)
    with pytest.raises(InputError, match=re.escape("image is 40x30 = 0.0012 MP, over the 0.001 MP cap")):
        prepare_image(encode(photo(40, 30), "JPEG"), tiny_cap)
    assert DEFAULT_MAX_PIXELS == 40_000_000


def test_raised_cap_still_meets_pillows_hard_limit() -> None:
    huge_cap = ImageSpec(min_side=512, formats=frozenset({"JPEG"}), max_pixels=10**10)
    with pytest.raises(InputError, match="decompression-bomb limit"):
        prepare_image(png_declaring(30000, 30000), huge_cap)


def test_lazy_pil_image_over_the_cap_is_refused_before_decoding() -> None:
    lazy = Image.open(io.BytesIO(png_declaring(8000, 6000)))
    with pytest.raises(InputError, match="48 MP, over the 40 MP cap"):
        prepare_image(lazy, NOMIC)


# -- open_image -----------------------------------------------------------------------------------------------


def test_open_image_reads_the_header_only(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(png_declaring(4000, 3000))
    img = open_image(path)
    assert isinstance(img, ImageFile.ImageFile)
    assert (img.format, img.size, bool(img.tile)) == ("PNG", (4000, 3000), True)  # tiles pending: not decoded
    with pytest.raises(InputError, match="12 MP, over the 10 MP cap"):
        open_image(path, max_pixels=10_000_000)


def test_open_image_allowlist() -> None:
    assert {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"} == ALLOWED_FORMATS
    for fmt in ("GIF", "BMP", "TIFF", "WEBP"):
        assert open_image(encode(photo(8, 8), fmt)).format == fmt


# -- arrays ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "mode", "pixel"),
    [
        pytest.param(np.full((4, 5), 7, np.uint8), "L", 7, id="HxW uint8"),
        pytest.param(np.full((4, 5, 1), 7, np.uint8), "L", 7, id="HxWx1"),
        pytest.param(np.full((4, 5, 3), (1, 2, 3), np.uint8), "RGB", (1, 2, 3), id="HxWx3 (Chroma)"),
        pytest.param(np.full((4, 5, 4), (1, 2, 3, 4), np.uint8), "RGBA", (1, 2, 3, 4), id="HxWx4"),
        pytest.param(np.full((4, 5, 3), 0.5, np.float64), "RGB", (128, 128, 128), id="float [0,1]"),
        pytest.param(np.full((4, 5), 0.2, np.float16), "L", 51, id="float16"),
        pytest.param(np.ones((4, 5), bool), "L", 255, id="bool"),
        pytest.param(np.full((4, 5), 0xABCD, np.uint16), "L", 0xAB, id="uint16 >> 8"),
        pytest.param(np.full((4, 5, 3), 200, np.int64), "RGB", (200, 200, 200), id="int64 in [0, 255]"),
        pytest.param(np.full((5, 4, 3), 9, np.uint8).transpose(1, 0, 2), "RGB", (9, 9, 9), id="non-contiguous"),
    ],
)
def test_array_to_image(array: np.ndarray, mode: str, pixel: object) -> None:
    img = array_to_image(array)
    assert (img.mode, img.size, img.getpixel((0, 0))) == (mode, (5, 4), pixel)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        pytest.param(np.zeros(10, np.uint8), r"shape \(10,\) is not an image", id="1-d"),
        pytest.param(np.zeros((4, 4, 5), np.uint8), r"shape \(4, 4, 5\) is not an image", id="5 channels"),
        pytest.param(np.zeros((2, 2, 2, 3), np.uint8), r"shape \(2, 2, 2, 3\)", id="4-d"),
        pytest.param(np.zeros((0, 4, 3), np.uint8), r"shape \(0, 4, 3\) is empty", id="empty"),
        pytest.param(np.full((2, 2), 1.5), r"must be in \[0, 1\]; got \[1.5, 1.5\]", id="float > 1"),
        pytest.param(np.full((2, 2), -0.25), r"got \[-0.25, -0.25\]", id="float < 0"),
        pytest.param(np.array([[0.1, np.nan]]), "float64 array contains NaN", id="NaN"),
        pytest.param(np.array([[0, 300]]), r"int64 array values must be in \[0, 255\].*got \[0, 300\]", id="int64 300"),
        pytest.param(np.array([[-1, 3]], np.int8), r"got \[-1, 3\]", id="negative int8"),
        pytest.param(np.array([[object(), object()]]), "unsupported array dtype object", id="object"),
        pytest.param(np.zeros((2, 2), np.complex64), "unsupported array dtype complex64", id="complex"),
    ],
)
def test_array_refusals_name_shape_dtype_or_range(array: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        array_to_image(array)


def test_chroma_array_is_shrunk_and_encoded() -> None:
    array = np.zeros((1024, 2048, 3), np.uint8)
    array[:, :, 1] = 255
    out = prepare_image(array, NOMIC)
    assert (out.width, out.height, out.media_type, out.passthrough) == (512, 256, "image/jpeg", False)
    assert near(decode(out).getpixel((100, 100)), (0, 255, 0))


# -- PIL images -----------------------------------------------------------------------------------------------


def test_lazy_pil_image_is_loaded_and_used() -> None:
    lazy = Image.open(io.BytesIO(encode(photo(800, 600), "PNG")))
    out = prepare_image(lazy, NOMIC)
    assert (out.width, out.height, out.passthrough) == (341, 256, False)
    assert isinstance(lazy, ImageFile.ImageFile) and not lazy.tile  # decoded


def test_truncated_lazy_pil_image_is_an_input_error() -> None:
    lazy = Image.open(io.BytesIO(truncated("JPEG", (200, 150))))
    with pytest.raises(InputError, match="truncated or corrupt JPEG"):
        prepare_image(lazy, NOMIC)


# -- specs and results ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_side": 0},
        {"formats": frozenset()},
        {"jpeg_quality": 0},
        {"jpeg_quality": 101},
        {"max_pixels": 0},
    ],
)
def test_impossible_spec_is_a_configuration_error(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"min_side": 256, "formats": frozenset({"JPEG"})}
    with pytest.raises(ConfigurationError):
        ImageSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_spec_format_names_are_normalised() -> None:
    assert ImageSpec(min_side=1, formats=frozenset({"jpeg", "Png"})).formats == {"JPEG", "PNG"}


def test_encoded_image_repr_leaves_out_the_bytes() -> None:
    out = prepare_image(photo(64, 64), NOMIC)
    assert repr(out) == "EncodedImage(media_type='image/jpeg', width=64, height=64, passthrough=False)"


def test_docstring_examples_run() -> None:
    assert doctest.testmod(images).failed == 0


# -- what the model sees --------------------------------------------------------------------------------------


def _clip_view(img: Image.Image, side: int) -> np.ndarray:
    """CLIP-style preprocessing (shortest side to ``side``, bicubic, centre square), as the models do it."""
    img = img.convert("RGB")
    scale = side / min(img.size)
    w, h = max(side, round(img.width * scale)), max(side, round(img.height * scale))
    img = img.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)), dtype=np.float64)


@pytest.mark.parametrize(
    ("formats", "upload_side", "model_side", "media_type"),
    [({"JPEG", "PNG", "WEBP"}, 512, 512, "image/jpeg"),  # Jina: shortest side 512, centre crop
     ({"JPEG", "PNG", "WEBP"}, 336, 224, "image/jpeg"),  # Nomic's vision tower: 224
     ({"JPEG", "PNG"}, 512, 512, "image/jpeg")],  # Vertex
)
def test_the_model_sees_the_upload_as_it_would_see_the_original(
    formats: set[str], upload_side: int, model_side: int, media_type: str
) -> None:
    # The stated tolerance (benchmarks/fidelity.py): PSNR >= 35 dB at the model's input, after its own resize.
    original = encode(colour_photo("orange", size=(1600, 1200), seed=5), "JPEG")
    out = prepare_image(original, ImageSpec(min_side=upload_side, formats=frozenset(formats)))
    assert out.media_type == media_type and min(out.width, out.height) == upload_side
    assert len(out.data) < len(original) / 5
    reference = _clip_view(Image.open(io.BytesIO(original)), model_side)
    seen = _clip_view(decode(out), model_side)
    mse = float(np.mean((reference - seen) ** 2))
    assert 10 * np.log10(255**2 / mse) >= 35.0
