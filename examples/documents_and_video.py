"""PDFs, video, audio and interleaved items: one vector per page or video segment with Embedder.expand.

    python examples/documents_and_video.py [gemini|vertex|jina|nomic]      # default: gemini

Runs offline on mmembed's emulator (fake vectors, real wire formats) with sample files made in code: a
3-page PDF with a text layer, a 40 s video of three colours, a 3 s WAV. ``embed`` gives one row per item
(a whole PDF or video becomes one vector, natively or through a fallback); ``expand`` splits items into the
segments that each deserve a vector and says where each lies (page; start/end seconds), and ``add_mixed``
stores them, metadata and all, in one Chroma collection that ``query_mixed`` ranks fairly across modalities.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import chromadb

from mmembed import Embedder, InputError, Interleaved
from mmembed.chroma import add_mixed, function_class, query_mixed
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.media import make_audio, make_pdf, make_video

RED, GREEN, BLUE = (220, 30, 30), (30, 180, 60), (30, 60, 220)


def sample_files(folder: Path) -> list[Path]:
    pdf = folder / "report.pdf"
    pdf.write_bytes(make_pdf(["Invoice 2041: three red bicycles", "A receipt for a blue kayak", "Green park minutes"]))
    video = folder / "talk.mp4"
    video.write_bytes(make_video(40, colour=[(0, RED), (16, GREEN), (32, BLUE)], fps=2))
    audio = folder / "tone.wav"
    audio.write_bytes(make_audio(3))
    photo = folder / "red.jpg"
    colour_photo("red", size=(640, 480)).save(photo, quality=88)
    return [pdf, video, audio, photo]


def main(provider: str = "gemini") -> None:
    options: dict[str, object] = {"api_key": "emulator-key"}
    if provider == "vertex":
        options["project_id"] = "demo-project"
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        print(f"{provider} on the offline emulator (fake vectors)\n")
        files = sample_files(Path(tmp))
        embedder = Embedder(provider, base_url=emu.url, **options)  # type: ignore[arg-type]

        # 1. expand: which segments each file yields on this provider (kinds it cannot take are refused by name)
        segments = []
        for path in files:
            try:
                found = embedder.expand([path])
            except InputError as err:
                print(f"  {path.name}: skipped ({err.reason.split(';')[0]})")
                continue
            for segment in found:
                print(f"  {path.name}: {segment.modality:<5} {segment.metadata}")
            segments.extend(found)

        # 2. embed: one row per segment, in order
        vectors = embedder.embed([s.item for s in segments])
        print(f"\n{len(segments)} segments -> vectors {vectors.shape}")

        # 3. one vector for several parts: native on gemini (one content), else the mean of the parts
        (both,) = embedder.embed([Interleaved(["a red bicycle", files[3]])])
        print(f"Interleaved(text + photo) -> one vector of {both.shape[0]} values")

        # 4. a Chroma collection of every modality, ranked fairly
        function = function_class(provider)(base_url=emu.url, **options)  # type: ignore[arg-type]
        collection = chromadb.EphemeralClient().get_or_create_collection("media", embedding_function=function)
        add_mixed(collection, [f"s{i}" for i in range(len(segments))], segments)
        hits = query_mixed(collection, query_texts=["invoice"], n_results=3)
        print("\nquery 'invoice':")
        for meta, score in zip(hits["metadatas"][0], hits["scores"][0], strict=True):  # calibrated relevance
            where = {k: v for k, v in (meta or {}).items() if k in ("page", "start", "end", "passage")}
            print(f"  {score:6.1f}  {meta and meta['modality']:<5} {where}")
        function.close()
        embedder.close()


if __name__ == "__main__":
    main(*sys.argv[1:2])
