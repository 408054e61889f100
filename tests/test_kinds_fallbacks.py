"""The named fallbacks at their edges: video windows, interleaved parts beyond one content, nested means, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mmembed import Embedder, InputError, Interleaved, MediaLimits, MediaSource
from mmembed.fallbacks import plan
from mmembed.inputs import to_item
from mmembed.testing import Emulator
from mmembed.testing.media import make_pdf, make_video


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fallbacks")
    out = {
        "a.pdf": make_pdf(["alpha page"]),
        "b.pdf": make_pdf(["beta page", "gamma page"]),
        "long.mp4": make_video(40, fps=1),
    }
    for name, data in out.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in out}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_a_video_longer_than_the_window_is_averaged_over_windows(
    files: dict[str, Path], embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("vertex", media_limits=MediaLimits(video_window=16))
    leaves = plan(embedder.provider, to_item(files["long.mp4"]))
    assert leaves is not None and [(leaf.start, leaf.end, w) for leaf, w in leaves] == [  # type: ignore[union-attr]
        (0, 16, 16), (16, 32, 16), (32, 40, 8)
    ]
    (whole,) = embedder.embed([files["long.mp4"]])
    clips = embedder.embed([leaf for leaf, _ in leaves])
    assert float(whole @ unit(16 * clips[0] + 16 * clips[1] + 8 * clips[2])) > 0.999
    assert len([r for r in mmembed_emulator.requests if "video" in r.json["instances"][0]]) == 6  # 3 + the same 3


def test_two_pdfs_in_one_interleaved_are_two_contents_on_gemini(
    files: dict[str, Path], embedder_for: Callable[..., Embedder], mmembed_emulator: Emulator
) -> None:
    embedder = embedder_for("gemini")
    (vector,) = embedder.embed([Interleaved([files["a.pdf"], files["b.pdf"], "a note"])])
    contents = [q["content"] for r in mmembed_emulator.requests for q in r.json["requests"]]
    assert sorted(len(c["parts"]) for c in contents) == [1, 1, 1]  # one content allows one PDF: the mean
    a, b, note = embedder.embed([files["a.pdf"], files["b.pdf"], "a note"])
    assert float(vector @ unit(a + b + note)) > 0.999


def test_an_interleaved_pdf_part_on_nomic_is_its_own_mean_first(
    files: dict[str, Path], embedder_for: Callable[..., Embedder]
) -> None:
    embedder = embedder_for("nomic")
    (vector,) = embedder.embed([Interleaved(["a note", files["b.pdf"]], weights=[1, 1])])
    note, pdf = embedder.embed(["a note", files["b.pdf"]])
    assert float(vector @ unit(note + pdf)) > 0.999  # the PDF's vector is re-normalised before weighting


def test_an_error_inside_a_fallback_names_the_caller_item(
    files: dict[str, Path], embedder_for: Callable[..., Embedder]
) -> None:
    embedder = embedder_for("jina")
    with pytest.raises(InputError, match="pages 2-5") as info:
        embedder.embed(["x", MediaSource(str(files["b.pdf"]), pages=(2, 5))])
    assert info.value.index == 1
    with pytest.raises(InputError, match="cannot embed video") as info:
        embedder.embed(["x", "y", Interleaved(["z", files["long.mp4"]])])
    assert info.value.index == 2


def test_the_pages_of_one_pdf_are_read_from_disk_once(
    tmp_path: Path, embedder_for: Callable[..., Embedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = tmp_path / "many.pdf"
    pdf.write_bytes(make_pdf([f"page {n}" for n in range(1, 9)]))
    reads: list[Path] = []
    real = Path.read_bytes

    def spy(self: Path) -> bytes:
        reads.append(self)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    for provider in ("gemini", "jina"):
        embedder = embedder_for(provider)
        segments = embedder.expand([pdf])
        embedder.embed([s.item for s in segments])
    assert reads.count(pdf) == 1
