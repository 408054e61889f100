"""Chroma and LlamaIndex over every kind: add_mixed with segments, fusion over the modalities present, loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import pytest

from conftest import CANARY_KEY, jpeg_bytes
from mmembed import Embedder, ImageSource, MediaSource
from mmembed.chroma import (
    MODALITIES_KEY,
    MediaURILoader,
    add_mixed,
    function_class,
    query_mixed,
    stored_modalities,
)
from mmembed.testing import Emulator, colour_photo
from mmembed.testing.media import make_audio, make_pdf, make_video

PAGES = ["An invoice for three red bicycles", "A receipt for a blue kayak"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kinds-chroma")
    (folder / "doc.pdf").write_bytes(make_pdf(PAGES))
    (folder / "clip.mp4").write_bytes(make_video(20, colour=[(0, (255, 0, 0)), (16, (0, 0, 255))]))
    (folder / "tone.wav").write_bytes(make_audio(2))
    (folder / "red.jpg").write_bytes(jpeg_bytes(colour_photo("red", size=(320, 240))))
    return folder


def function(provider: str, emu: Emulator, **options: Any) -> Any:
    if provider == "vertex":
        options.setdefault("project_id", "test-project")
    return function_class(provider)(base_url=emu.url, api_key=CANARY_KEY, requests_per_minute=60_000, **options)


class CountingCollection:
    """A collection whose query() calls are counted (Chroma's Collection is a pydantic model: wrap, don't patch)."""

    def __init__(self, collection: Any) -> None:
        self._collection, self.queries = collection, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def query(self, **kwargs: Any) -> Any:
        self.queries += 1
        return self._collection.query(**kwargs)


def test_segments_of_every_kind_in_one_collection(folder: Path, mmembed_emulator: Emulator) -> None:
    ef = function("vertex", mmembed_emulator)
    client = chromadb.EphemeralClient()
    col = client.create_collection("kinds-vertex", embedding_function=ef)
    segments = ef.embedder.expand([folder / "doc.pdf", folder / "clip.mp4", folder / "red.jpg", "a red bicycle"])
    add_mixed(col, [f"s{i}" for i in range(len(segments))], segments)
    got = col.get(include=["metadatas", "uris", "documents"])
    by_id = dict(zip(got["ids"], got["metadatas"] or [], strict=True))
    modalities = sorted(str(m["modality"]) for m in by_id.values())
    assert modalities == ["image", "pdf", "pdf", "text", "text", "text", "video", "video"]
    videos = sorted((m["start"], m["end"]) for m in by_id.values() if m["modality"] == "video")
    assert videos == [(0, 16), (16, 20)]
    pages = sorted(m["page"] for m in by_id.values() if m["modality"] == "pdf")
    assert pages == [1, 2]
    assert str(folder / "doc.pdf") in (got["uris"] or [])  # a page's uri is its PDF
    assert stored_modalities(col) == ("text", "image", "pdf", "video")
    counting = CountingCollection(col)
    hits = query_mixed(counting, query_texts=["red"], n_results=8)  # type: ignore[arg-type]
    assert counting.queries == 4  # one per modality present, not six
    assert {m["modality"] for m in hits["metadatas"][0]} == {"text", "image", "pdf", "video"}
    assert len(hits["ids"][0]) == 8
    ef.close()


def test_a_text_and_image_collection_still_costs_two_queries(folder: Path, mmembed_emulator: Emulator) -> None:
    ef = function("jina", mmembed_emulator)
    col = chromadb.EphemeralClient().create_collection("two", embedding_function=ef, metadata={"owner": "me"})
    add_mixed(col, ["a", "b"], ["a red bicycle", folder / "red.jpg"])
    assert col.metadata[MODALITIES_KEY] == "text,image" and col.metadata["owner"] == "me"
    counting = CountingCollection(col)
    query_mixed(counting, query_texts=["red"])  # type: ignore[arg-type]
    assert counting.queries == 2
    ef.close()


def test_media_uri_loader_takes_any_kind(folder: Path, mmembed_emulator: Emulator) -> None:
    loaded = MediaURILoader()([str(folder / "doc.pdf"), "https://example.com/a.mp4", "https://example.com/b.jpg", None])
    assert loaded[0] == folder / "doc.pdf"
    assert isinstance(loaded[1], MediaSource) and isinstance(loaded[2], ImageSource) and loaded[3] is None
    ef = function("vertex", mmembed_emulator)
    col = chromadb.EphemeralClient().create_collection(
        "uris", embedding_function=ef, data_loader=MediaURILoader()  # type: ignore[arg-type]
    )
    col.add(ids=["v", "i"], uris=[str(folder / "clip.mp4"), str(folder / "red.jpg")])
    assert col.count() == 2
    paths = [r.json["instances"][0] for r in mmembed_emulator.requests]
    assert sum("video" in p for p in paths) == 1 and sum("image" in p for p in paths) == 1
    ef.close()


def test_llama_index_adapter_embeds_pdfs_and_video(folder: Path, mmembed_emulator: Emulator) -> None:
    from mmembed.llama_index import VertexMultiModalEmbedding

    embed = VertexMultiModalEmbedding(api_key=CANARY_KEY, base_url=mmembed_emulator.url, project_id="p")
    vectors = embed.get_image_embedding_batch([str(folder / "clip.mp4"), str(folder / "doc.pdf")])
    assert [len(v) for v in vectors] == [1408, 1408]
    segments = embed.embedder.expand([folder / "clip.mp4"])
    assert [s.metadata for s in segments] == [{"start": 0, "end": 16}, {"start": 16, "end": 20}]
    embed.close()
    assert isinstance(Embedder, type)
