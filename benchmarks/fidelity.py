"""What the model sees: mmembed's upload against the original photo, after the model's own resize.

    .venv/bin/python benchmarks/fidelity.py          # prints the table the README quotes

A model never sees the uploaded bytes as such: Jina's CLIP resizes the shortest side to 512 and crops the
centre square, Nomic's vision tower does the same at 224, Vertex squashes to 512x512. So the fair question for
an encoding is how far *that* image moves, not how far the upload is from the original. For each photo and
model this compares the model's view of the original file (resized by Pillow's bicubic, as CLIP preprocessors
do) with the model's view of what mmembed uploads, by PSNR (dB, higher is closer) and SSIM (luma, 7x7 windows;
1.0 is identical), next to the bytes uploaded. The photos: the benchmark's 12 generated photos (2400x1800) and
a worst case, the same kind of photo under heavy sensor-like noise and fine stripes (what JPEG and WebP find
hardest to compress).

**Tolerance**: PSNR ≥ 35 dB and SSIM ≥ 0.97 at the model's input, on every photo: an RMS error under 1/50 of
the full scale. The encoding mmembed sent before (JPEG q90) is shown for comparison; every row is held to the
same bound.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import photos  # noqa: E402

from mmembed.images import ImageSpec, prepare_image  # noqa: E402
from mmembed.testing import colour_photo  # noqa: E402

PSNR_MIN, SSIM_MIN = 35.0, 0.97


def short_side_crop(side: int) -> Callable[[Image.Image], Image.Image]:
    """CLIP-style preprocessing: the shortest side to ``side`` (bicubic), then the centre square."""

    def view(img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        scale = side / min(img.size)
        w, h = max(side, round(img.width * scale)), max(side, round(img.height * scale))
        img = img.resize((w, h), Image.Resampling.BICUBIC)
        left, top = (w - side) // 2, (h - side) // 2
        return img.crop((left, top, left + side, top + side))

    return view


def squash(side: int) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class Model:
    name: str
    view: Callable[[Image.Image], Image.Image]
    upload_side: int
    formats: frozenset[str]
    before_side: int  # what mmembed uploaded before (with JPEG q90)


WEBP_OK, NO_WEBP = frozenset({"JPEG", "PNG", "WEBP"}), frozenset({"JPEG", "PNG"})
MODELS = [
    Model("jina-clip-v2 (512, centre crop)", short_side_crop(512), 512, WEBP_OK, 512),
    Model("nomic-embed-vision-v1.5 (224, centre crop)", short_side_crop(224), 336, WEBP_OK, 256),
    Model("Vertex multimodalembedding@001 (512x512)", squash(512), 512, NO_WEBP, 512),
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, k: int = 7) -> float:
    """Mean SSIM of the luma of two RGB arrays over k x k windows (Wang et al. 2004, uniform windows)."""
    luma = np.array([0.299, 0.587, 0.114])
    x, y = a.astype(np.float64) @ luma, b.astype(np.float64) @ luma

    def box(z: np.ndarray) -> np.ndarray:
        c = np.cumsum(np.cumsum(np.pad(z, ((1, 0), (1, 0))), 0), 1)
        return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)

    mx, my = box(x), box(y)
    vx, vy, cov = box(x * x) - mx**2, box(y * y) - my**2, box(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(np.mean((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def noisy_photo() -> Path:
    """The worst case: a generated photo under noise (sigma 18) and 3-pixel stripes, as a q92 JPEG file."""
    path = photos.DATA / "fidelity-noisy-2400x1800.jpg"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        base = np.asarray(colour_photo("green", (2400, 1800), seed=3)).astype(np.float64)
        stripes = 40 * np.sin(np.arange(2400) / 3.0)[None, :, None]
        noisy = np.clip(base + rng.normal(0, 18, base.shape) + stripes, 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path, "JPEG", quality=92)
    return path


@dataclass
class Row:
    model: str
    photos: str
    encoding: str
    kb: float
    psnr_min: float
    ssim_min: float

    @property
    def ok(self) -> bool:
        return self.psnr_min >= PSNR_MIN and self.ssim_min >= SSIM_MIN


def measure(model: Model, paths: list[Path], label: str, spec: ImageSpec, encoding: str) -> Row:
    sizes, psnrs, ssims = [], [], []
    for path in paths:
        with Image.open(path) as original:
            reference = np.asarray(model.view(original))
        upload = prepare_image(path, spec)
        with Image.open(io.BytesIO(upload.data)) as sent:
            seen = np.asarray(model.view(sent))
        sizes.append(len(upload.data))
        psnrs.append(psnr(reference, seen))
        ssims.append(ssim(reference, seen))
    return Row(model.name, label, encoding, float(np.mean(sizes)) / 1024, min(psnrs), min(ssims))


def rows(photo_count: int = 12) -> list[Row]:
    sets = {f"{photo_count} benchmark photos": photos.photo_set("chroma", photo_count, (2400, 1800)),
            "noisy worst case": [noisy_photo()]}
    out = []
    for model in MODELS:
        now = ImageSpec(min_side=model.upload_side, formats=model.formats)
        before = ImageSpec(min_side=model.before_side, formats=frozenset({"JPEG"}), jpeg_quality=90)
        encoding = f"JPEG q85 4:2:0, side {model.upload_side}"
        for label, paths in sets.items():
            out.append(measure(model, paths, label, now, encoding))
            out.append(measure(model, paths, label, before, f"(before: JPEG q90, side {model.before_side})"))
            if "WEBP" in model.formats:  # the road not taken: half the bytes, ~10x the encoding time
                webp = ImageSpec(min_side=model.upload_side, formats=frozenset({"WEBP"}))
                out.append(measure(model, paths, label, webp, f"(WebP q85, side {model.upload_side})"))
    return out


def markdown(table: list[Row]) -> str:
    lines = ["| model's input | photos | upload | KB per photo | PSNR min (dB) | SSIM min | within tolerance |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.photos} | {r.encoding} | {r.kb:,.1f} | {r.psnr_min:.1f} | {r.ssim_min:.4f} | "
              f"{'yes' if r.ok else '**no**'} |" for r in table]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(rows()))
