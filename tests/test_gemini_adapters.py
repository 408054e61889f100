"""The adapters derived from the registry work for gemini: Chroma, LlamaIndex, the CLI (against the emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from conftest import jpeg_bytes, png_bytes
from mmembed import ConfigurationError, ImageSource, UnsafeURLError
from mmembed.chroma import (
    MultimodalEmbeddingFunction,
    add_mixed,
    query_mixed,
)
from mmembed.cli import main
from mmembed.testing import Emulator, colour_photo

CANARY = "canary-key-gemini-51d2"
SETTINGS = Settings(anonymized_telemetry=False)


def gemini_function(emu: Emulator, **options: Any) -> MultimodalEmbeddingFunction:
    from mmembed.chroma import GeminiMultimodalEmbeddingFunction  # type: ignore[attr-defined]

    options.setdefault("api_key", CANARY)
    function: MultimodalEmbeddingFunction = GeminiMultimodalEmbeddingFunction(base_url=emu.url, **options)
    return function


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "red.jpg"
    path.write_bytes(jpeg_bytes(colour_photo("red", size=(1600, 1200))))
    return path


def test_chroma_function_adds_a_mixed_batch_to_a_persistent_store(
    tmp_path: Path, mmembed_emulator: Emulator, photo: Path
) -> None:
    ef = gemini_function(mmembed_emulator, dimensions=768)
    assert type(ef).__name__ == "GeminiMultimodalEmbeddingFunction" and ef.name() == "mmembed_gemini"
    client = chromadb.PersistentClient(path=str(tmp_path / "db"), settings=SETTINGS)
    col = client.get_or_create_collection("gemini-media", embedding_function=ef)  # type: ignore[arg-type]
    items: list[object] = ["a red fire truck", photo, "the blue sea", png_bytes(colour_photo("blue", size=(300, 200)))]
    add_mixed(col, ["t-red", "p-red", "t-blue", "p-blue"], items)
    assert col.count() == 4
    stored = col.get(ids=["p-red"], include=["embeddings", "metadatas"])
    assert len(stored["embeddings"][0]) == 768 and stored["metadatas"][0]["modality"] == "image"
    hits = query_mixed(col, query_texts=["something red"], n_results=4)
    assert set(hits["ids"][0][:2]) == {"t-red", "p-red"}  # the red text and the red photo first

    config = ef.get_config()
    assert config["model"] == "gemini-embedding-2" and config["dimensions"] == 768
    assert config["api_key_env_var"] == "GEMINI_API_KEY"
    assert config["query_template"] == "task: search result | query: {text}"
    assert CANARY not in json.dumps(config) and CANARY not in repr(ef)
    # length.bin is skipped: chromadb writes its preallocated HNSW buffer with uncleared heap bytes (see test_keys).
    files = [p for p in (tmp_path / "db").rglob("*") if p.is_file() and p.name != "length.bin"]
    on_disk = [p for p in files if CANARY.encode() in p.read_bytes()]
    assert on_disk == []
    # All requests went to the Gemini API, one content per item, and every one was accepted.
    assert {r.path for r in mmembed_emulator.requests} == {"/v1beta/models/gemini-embedding-2:batchEmbedContents"}
    assert all(r.status == 200 for r in mmembed_emulator.requests)


def test_chroma_config_round_trips_and_model_and_dimensions_are_frozen(
    tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ef = gemini_function(mmembed_emulator, dimensions=1536)
    config = ef.get_config()
    rebuilt = type(ef).build_from_config(config)
    assert rebuilt.get_config() == config
    monkeypatch.setenv("GEMINI_API_KEY", "from-the-env")
    assert len(rebuilt(["a red car"])[0]) == 1536  # the rebuilt function reads the key from the env var
    assert mmembed_emulator.requests[-1].headers["x-goog-api-key"] == "from-the-env"
    with pytest.raises(ConfigurationError, match="model cannot change"):
        ef.validate_config_update(config, {**config, "model": "gemini-embedding-001"})
    with pytest.raises(ConfigurationError, match="dimensions cannot change"):
        ef.validate_config_update(config, {**config, "dimensions": 768})


def test_chroma_function_reads_google_api_key_as_the_fallback(
    mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    from mmembed.chroma import GeminiMultimodalEmbeddingFunction  # type: ignore[attr-defined]

    ef = GeminiMultimodalEmbeddingFunction(base_url=mmembed_emulator.url)
    assert ef.get_config()["api_key_env_var"] == "GOOGLE_API_KEY"
    ef(["x"])
    assert mmembed_emulator.requests[0].headers["x-goog-api-key"] == "google-key"


def test_vertex_chroma_function_takes_gemini_embedding_2(tmp_path: Path, mmembed_emulator: Emulator) -> None:
    from mmembed.chroma import VertexMultimodalEmbeddingFunction

    ef = VertexMultimodalEmbeddingFunction(
        model="gemini-embedding-2", project_id="p", api_key=CANARY, base_url=mmembed_emulator.url
    )
    client = chromadb.PersistentClient(path=str(tmp_path / "db"), settings=SETTINGS)
    col = client.get_or_create_collection("vertex-media", embedding_function=ef)  # type: ignore[arg-type]
    add_mixed(col, ["t", "p"], ["a red car", colour_photo("red", size=(400, 300))])
    config = ef.get_config()
    assert config["model"] == "gemini-embedding-2" and config["location"] == "global"
    assert config["dimensions"] == 3072 and CANARY not in json.dumps(config)
    assert type(ef).build_from_config(config).get_config() == config
    paths = {r.path for r in mmembed_emulator.requests}
    assert paths == {"/v1/projects/p/locations/global/publishers/google/models/gemini-embedding-2:embedContent"}
    assert len(mmembed_emulator.requests) == 2


def test_llama_index_class_embeds_text_and_image(mmembed_emulator: Emulator, photo: Path) -> None:
    from mmembed.llama_index import GeminiMultiModalEmbedding  # type: ignore[attr-defined]

    embed = GeminiMultiModalEmbedding(api_key=CANARY, base_url=mmembed_emulator.url, dimensions=768)
    assert embed.model_name == "gemini-embedding-2"
    assert CANARY not in repr(embed) and CANARY not in embed.to_json()
    text = embed.get_text_embedding("a red fire truck")
    query = embed.get_query_embedding("something red")
    image = embed.get_image_embedding(str(photo))
    assert len(text) == len(query) == len(image) == 768
    assert float(np.dot(query, image)) > 0.3  # the smaller modality gap: a query meets its photo
    sent = [r.json["requests"][0]["content"]["parts"][0] for r in mmembed_emulator.requests]
    assert sent[0] == {"text": "title: none | text: a red fire truck"}
    assert sent[1] == {"text": "task: search result | query: something red"}
    assert sent[2]["inlineData"]["mimeType"] == "image/jpeg"


def test_cli_ingest_and_search_with_gemini(
    tmp_path: Path, mmembed_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "banana.txt").write_text("A ripe banana on the kitchen table.")
    (folder / "sea.md").write_text("The deep blue sea.")
    (folder / "yellow.png").write_bytes(png_bytes(colour_photo("yellow", size=(640, 480))))
    (folder / "blue.jpg").write_bytes(jpeg_bytes(colour_photo("blue", size=(640, 480))))
    monkeypatch.setenv("GEMINI_API_KEY", "cli-key")
    store = ["--collection", "gemini-media", "--db", str(tmp_path / "db"), "--base-url", mmembed_emulator.url]
    assert main(["ingest", str(folder), "--provider", "gemini", "-q", *store]) == 0
    parts = [r["content"]["parts"][0] for q in mmembed_emulator.requests for r in q.json["requests"]]
    assert len(parts) == 4 and sum("inlineData" in p for p in parts) == 2
    assert all(q.status == 200 for q in mmembed_emulator.requests)
    capsys.readouterr()
    assert main(["search", "banana", "-n", "2", *store]) == 0
    out = capsys.readouterr().out
    assert "banana.txt" in out and "yellow.png" in out  # the text and the photo of its colour, fused fairly
    again = len(mmembed_emulator.requests)
    assert main(["ingest", str(folder), "--provider", "gemini", "-q", *store]) == 0
    assert len(mmembed_emulator.requests) == again + 0  # nothing changed: nothing sent


def test_image_source_urls_are_downloaded_for_gemini(mmembed_emulator: Emulator) -> None:
    ef = gemini_function(mmembed_emulator, allow_private_urls=False)
    with pytest.raises(UnsafeURLError, match=r"private|loopback|refused"):
        ef([ImageSource("http://127.0.0.1:9/x.png")])  # type: ignore[list-item]


def test_langchain_class_embeds_texts_and_images(mmembed_emulator: Emulator, photo: Path) -> None:
    pytest.importorskip("langchain_core")
    from mmembed.langchain import embeddings_class

    cls = embeddings_class("gemini")
    assert cls.__name__ == "GeminiMultimodalEmbeddings"
    embeddings = cls(api_key=CANARY, base_url=mmembed_emulator.url, dimensions=256)
    assert CANARY not in repr(embeddings) and CANARY not in json.dumps(embeddings.model_dump(mode="json"))
    docs = embeddings.embed_documents(["a red fire truck", "the blue sea"])
    query = embeddings.embed_query("something red")
    (image,) = embeddings.embed_image([str(photo)])
    assert [len(v) for v in (*docs, query, image)] == [256] * 4
    assert float(np.dot(query, image)) > float(np.dot(query, docs[1]))  # the red photo beats the blue sea
    parts = [r.json["requests"][0]["content"]["parts"][0] for r in mmembed_emulator.requests]
    assert parts[1] == {"text": "task: search result | query: something red"}
