"""Photo-like JPEG files for the benchmark, generated once into benchmarks/.data/ and reused.

Big photos come straight from :func:`mmembed.testing.colour_photo` (one per colour and seed). The 10,000
small photos of the streaming run are distinct crops of a few large bases with a per-file stamp, because
drawing 10,000 photos from scratch would take minutes; every file still has its own bytes and content hash,
so neither the cache nor in-call de-duplication can collapse them.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from mmembed.testing import COLOURS, colour_photo

DATA = Path(__file__).resolve().parent / ".data"
COLOUR_NAMES = list(COLOURS)
JPEG_QUALITY = 90


def photo_set(name: str, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` photo-like JPEGs of ``size`` in benchmarks/.data/<name>/ (made once, then reused)."""
    folder = DATA / f"{name}-{size[0]}x{size[1]}"
    paths = [folder / f"{i:05d}.jpg" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(str(paths[i]), i, size) for i in missing]
        with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
            list(pool.map(_write_big, jobs, chunksize=1))
    return paths


def _write_big(job: tuple[str, int, tuple[int, int]]) -> None:
    path, i, size = job
    image = colour_photo(COLOUR_NAMES[i % len(COLOUR_NAMES)], size, seed=i // len(COLOUR_NAMES))
    _save_atomic(image, Path(path))


def stream_set(count: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """``count`` distinct photo-like JPEGs of ``size``: crops of 2x-sized bases, each with a unique stamp."""
    folder = DATA / f"stream-{size[0]}x{size[1]}"
    paths = [folder / f"{i:05d}.jpg" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        workers = os.cpu_count() or 2
        chunks = [missing[k::workers] for k in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_crops, [(folder, c, size) for c in chunks]))
    return paths


BASES = 2 * len(COLOUR_NAMES)  # 24 large base photos


def _write_crops(job: tuple[Path, list[int], tuple[int, int]]) -> None:
    folder, indexes, (width, height) = job
    bases: dict[int, np.ndarray] = {}
    for i in indexes:
        b = i % BASES
        if b not in bases:
            base = colour_photo(COLOUR_NAMES[b % len(COLOUR_NAMES)], (2 * width, 2 * height), seed=100 + b)
            bases[b] = np.asarray(base)
        k = i // BASES  # distinct crop offsets per base: a 21 x 20 grid
        dx, dy = (k % 21) * (width // 21), (k // 21 % 20) * (height // 20)
        crop = bases[b][dy : dy + height, dx : dx + width].copy()
        crop[:8, : 8 * 16] = _stamp(i, 16)  # a 16-bit id in 8x8 blocks, top left: bytes differ even if crops meet
        _save_atomic(Image.fromarray(crop), folder / f"{i:05d}.jpg")


def _stamp(i: int, bits: int) -> np.ndarray:
    row = np.repeat([255 if (i >> b) & 1 else 0 for b in range(bits)], 8).astype(np.uint8)
    return np.broadcast_to(row[None, :, None], (8, 8 * bits, 3))


def _save_atomic(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


TEXT_SUBJECTS = ["a red sports car", "a bowl of green apples", "the blue sea at noon", "a yellow taxi",
                 "an orange sunset", "purple flowers in a field", "a pink flamingo", "a brown leather bag",
                 "a black cat asleep", "a white wedding dress", "a gray concrete wall", "a cyan swimming pool"]


def texts(count: int) -> list[str]:
    """``count`` distinct short captions (distinct, so no de-duplication helps anyone)."""
    return [f"Photo {i}: {TEXT_SUBJECTS[i % len(TEXT_SUBJECTS)]}, seen from angle {i * 37 % 360} degrees."
            for i in range(count)]
