"""Every Python block of the docs and the README runs, against the offline emulator, so no example rots.

Each page's ```python blocks run in order in one namespace (as a reader would type them), in a folder that holds
the sample files the examples name (``photos/``, ``notes/``, ``bike.jpg``, ``report.pdf``, ``talk.mp4``,
``call.wav``...). Every provider is pointed at the emulator, with a test key in its variable and its test options
(a project id, say): what the reader's environment would provide. Console and TOML blocks are not Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import jpeg_bytes
from mmembed import Embedder
from mmembed.providers import PROVIDERS
from mmembed.testing import Emulator, colour_photo

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [page for page in found if "hooks" not in page.parts and FENCE.search(page.read_text("utf-8"))]


def blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block of ``page``."""
    text = page.read_text("utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def make_samples(folder: Path) -> None:
    """The files the examples name, made in code (no downloads)."""
    from mmembed.testing.media import make_audio, make_pdf, make_video

    photos = folder / "photos"
    photos.mkdir()
    for colour in ("red", "yellow", "blue"):
        (photos / f"{colour}.jpg").write_bytes(jpeg_bytes(colour_photo(colour, size=(640, 480))))
    for name, colour in (("bike.jpg", "red"), ("red.jpg", "red"), ("photo.jpg", "green"), ("page.png", "blue")):
        (folder / name).write_bytes(jpeg_bytes(colour_photo(colour, size=(640, 480))))
    notes = folder / "notes"
    notes.mkdir()
    (notes / "banana.txt").write_text("A ripe banana is yellow and sweet.")
    (notes / "sea.md").write_text("# The sea\n\nThe open sea is deep blue under a clear sky.")
    (folder / "report.pdf").write_bytes(make_pdf(["Quarterly report\nRevenue grew.", "Outlook\nSteady."]))
    (folder / "talk.mp4").write_bytes(make_video(6, audio=True))
    (folder / "call.wav").write_bytes(make_audio(3))


@pytest.fixture
def reader_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A working folder with the samples, and every provider configured as a reader's would be, on the emulator."""
    make_samples(tmp_path)
    monkeypatch.chdir(tmp_path)
    with Emulator() as emu:
        monkeypatch.setenv("MMEMBED_TRUSTED_HOSTS", urlsplit(emu.url).netloc)
        monkeypatch.setenv("MMEMBED_DB", str(tmp_path / "store"))
        for cls in PROVIDERS.values():
            monkeypatch.setenv(cls.env_var, "docs-test-key")
        original = Embedder.__init__

        def configured(self: Embedder, provider: str, **options: Any) -> None:
            cls = PROVIDERS[provider.lower().strip()]
            options.setdefault("base_url", emu.url)  # the reader's default host, played by the emulator
            for key, value in cls.test_options.items():
                options.setdefault(key, value)
            original(self, provider, **options)

        monkeypatch.setattr(Embedder, "__init__", configured)
        yield emu


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, reader_environment: Emulator) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for line, code in blocks(page):
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page.relative_to(ROOT)}, the block at line {line} failed: {exc!r}") from exc
    for value in list(namespace.values()):  # close what the examples opened (embedders, adapters)
        close = getattr(value, "close", None)
        if callable(close) and type(value).__module__.startswith("mmembed"):
            close()


def test_every_page_with_python_is_collected() -> None:
    collected = pages()
    assert ROOT / "README.md" in collected
    assert all(blocks(page) for page in collected)
