"""Sample pictures for tests, demos and benchmarks: photo-like images of one dominant colour.

The pictures are synthetic (a base colour, a soft lighting gradient, blotches, a few shapes in nearby shades
and sensor-like noise) so that they compress like real photographs — a 1600x1200 JPEG at quality 90 weighs a
few hundred kilobytes — while anyone, and the emulator's colour detector, still sees one clear colour.

>>> colour_photo("red", (64, 48)).size
(64, 48)
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["COLOURS", "colour_photo"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 135, 25),
    "yellow": (240, 215, 45),
    "green": (45, 155, 65),
    "blue": (35, 80, 205),
    "purple": (125, 55, 165),
    "pink": (240, 145, 185),
    "brown": (115, 72, 40),
    "black": (18, 18, 18),
    "white": (242, 242, 242),
    "gray": (128, 128, 128),
    "cyan": (35, 195, 215),
}


def _rng(colour: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"mmembed-photo:{colour}:{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _shade(base: NDArray[np.float64], factor: float) -> tuple[int, int, int]:
    """``base`` made lighter (factor > 1) or darker (< 1), moving toward white or black so hue survives."""
    if factor >= 1:
        out = base + (255 - base) * min(factor - 1, 1.0)
    else:
        out = base * factor
    r, g, b = (round(float(c)) for c in np.clip(out, 0, 255))
    return r, g, b


def colour_photo(colour: str, size: tuple[int, int] = (1600, 1200), *, seed: int = 0) -> Image.Image:
    """A deterministic photo-like RGB image whose dominant colour is ``COLOURS[colour]``.

    ``seed`` varies the lighting, blotches and shapes, so several different pictures of one colour exist.
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose one of {', '.join(COLOURS)}")
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    rng = _rng(colour, seed)
    base = np.array(COLOURS[colour], dtype=np.float64)

    # Shapes first, drawn on a flat canvas in shades of the base colour (like objects lit differently).
    canvas = Image.new("RGB", (width, height), _shade(base, 1.0))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.04, 0.16) * width, rng.uniform(0.04, 0.16) * height
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        fill = _shade(base, float(rng.uniform(0.72, 1.18)))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(width, height) / 400)))
    pixels = np.asarray(canvas, dtype=np.float32)

    # Lighting: a linear gradient in a random direction, ±12 % brightness.
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(angle) * (xs / max(width - 1, 1) - 0.5) + np.sin(angle) * (ys / max(height - 1, 1) - 0.5)
    light = 1.0 + 0.24 * ramp
    # Blotches: low-frequency texture, then fine per-pixel noise like a camera sensor.
    coarse = rng.normal(0.0, 1.0, (max(2, height // 64), max(2, width // 64))).astype(np.float32)
    blotch_img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    blotches = np.asarray(blotch_img, dtype=np.float32) * 9.0
    noise = rng.normal(0.0, 7.0, (height, width, 3)).astype(np.float32)
    out = pixels * light[..., None] + blotches[..., None] + noise
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
