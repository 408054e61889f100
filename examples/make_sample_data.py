"""Build the demo's sample data in examples/data: colour photos, a few notes, a PDF, a video clip and a sound.

    python examples/make_sample_data.py [OUT_DIR]

No downloaded assets: the photos come from mmembed.testing.colour_photo (gradients, noise and shapes
around one dominant colour), so the emulator and real models alike can tell them apart by colour; the PDF
(with a real text layer), the clip and the sound from mmembed.testing.media (needs mmembed[media]).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mmembed.testing import colour_photo
from mmembed.testing.media import make_audio, make_pdf, make_video

PHOTOS = {
    "red": "jpg",
    "orange": "jpg",
    "yellow": "png",
    "green": "jpg",
    "blue": "webp",
    "purple": "jpg",
}
TEXTS = {
    "banana.txt": (
        "The banana is an elongated, edible fruit. A ripe banana is yellow and sweet; "
        "bananas grow in hanging clusters on large herbaceous plants.\n\n"
        "Banana bread is a popular way to use bananas that have become too ripe to eat."
    ),
    "sea.md": (
        "# The sea\n\nThe open sea is deep blue under a clear sky. Waves roll towards the shore, "
        "and the horizon fades into a pale blue haze."
    ),
    "forest.txt": "A walk through a green forest: moss, ferns and tall pines, light falling through the leaves.",
}
INVOICE = (
    "Invoice No. 2041\nBilled to: Harbour Fruit Ltd.\n40 crates of bananas, 12 crates of lemons\nTotal: 1,320 EUR",
    "Payment terms\nPayable within 30 days of the invoice date by bank transfer.",
)
MEDIA = {
    "documents/invoice.pdf": lambda: make_pdf(INVOICE),
    "media/red-clip.mp4": lambda: make_video(6.0, colour=(220, 30, 30)),
    "media/tone.wav": lambda: make_audio(2.0),
}


def build(out: Path) -> list[Path]:
    """Write the sample files into ``out`` (skipping those already there) and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (colour, ext) in enumerate(PHOTOS.items()):
        path = out / "photos" / f"{colour}.{ext}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            image = colour_photo(colour, size=(1600, 1200), seed=i)
            image.save(path, quality=90) if ext != "png" else image.save(path)
        written.append(path)
    for name, text in TEXTS.items():
        path = out / "notes" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    for name, make in MEDIA.items():
        path = out / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(make())
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    files = build(target)
    print(f"{len(files)} sample files in {target}")
