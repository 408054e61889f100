"""Texts and photos in one LlamaIndex MultiModalVectorStoreIndex over Chroma, embedded by mmembed.

    python examples/llama_index_mixed.py [jina|nomic|vertex|gemini]

Uses the live API when the provider's key is in the environment (JINA_API_KEY, NOMIC_API_KEY,
GEMINI_API_KEY, or GOOGLE_API_KEY + GOOGLE_CLOUD_PROJECT for Vertex); otherwise starts mmembed's offline
emulator, which answers with fake vectors that still put a colour's name near photos of that colour.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import chromadb
from llama_index.core import StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import Document, ImageDocument
from llama_index.vector_stores.chroma import ChromaVectorStore

from mmembed.llama_index import (
    EmbedderMultiModalEmbedding,
    JinaMultiModalEmbedding,
    NomicMultiModalEmbedding,
    VertexMultiModalEmbedding,
    embedding_class,
)
from mmembed.testing import Emulator, colour_photo

CLASSES: dict[str, type[EmbedderMultiModalEmbedding]] = {
    "jina": JinaMultiModalEmbedding,
    "nomic": NomicMultiModalEmbedding,
    "vertex": VertexMultiModalEmbedding,
    "gemini": embedding_class("gemini"),
}
LIVE_ENV = {
    "jina": ("JINA_API_KEY",),
    "nomic": ("NOMIC_API_KEY",),
    "vertex": ("GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT"),
    "gemini": ("GEMINI_API_KEY",),
}
TEXTS = ["The sea was a deep blue that day", "A red fire truck parked outside", "Fresh green grass in the park"]
COLOURS = ["red", "blue", "green", "yellow"]


def embed_model_for(provider: str, stack: contextlib.ExitStack) -> EmbedderMultiModalEmbedding:
    """The live API if its key is set, else the offline emulator (and say which on stdout)."""
    if all(os.environ.get(var) for var in LIVE_ENV[provider]):
        print(f"{provider}: live API ({LIVE_ENV[provider][0]} is set)")
        return CLASSES[provider]()
    emulator = stack.enter_context(Emulator())
    print(f"{provider}: no {LIVE_ENV[provider][0]} set, so using the offline emulator at {emulator.url} (fake vectors)")
    options: dict[str, Any] = {"project_id": "demo-project"} if provider == "vertex" else {}
    return CLASSES[provider](api_key="emulator-key", base_url=emulator.url, **options)


def main(provider: str = "jina") -> None:
    with contextlib.ExitStack() as stack:
        embed_model = embed_model_for(provider, stack)
        stack.callback(embed_model.close)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        documents = [Document(text=t) for t in TEXTS]
        for colour in COLOURS:
            path = folder / f"{colour}.jpg"
            colour_photo(colour, size=(1600, 1200)).save(path, quality=90)
            documents.append(ImageDocument(image_path=str(path), metadata={"colour": colour}))

        client = chromadb.EphemeralClient()
        storage = StorageContext.from_defaults(
            vector_store=ChromaVectorStore(chroma_collection=client.get_or_create_collection("demo_texts")),
            image_store=ChromaVectorStore(chroma_collection=client.get_or_create_collection("demo_images")),
        )
        # from_documents turns each ImageDocument into an ImageNode (passed as nodes, LlamaIndex drops them).
        index = MultiModalVectorStoreIndex.from_documents(
            documents,
            storage_context=storage,
            embed_model=embed_model,
            image_embed_model=embed_model,
        )
        retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=2)

        for hit in retriever.text_to_image_retrieve("yellow"):
            print(f"'yellow' -> photo {hit.node.metadata['colour']} (score {hit.score:.3f})")
        for hit in retriever.text_retrieve("blue"):
            print(f"'blue'   -> text {hit.node.get_content()!r} (score {hit.score:.3f})")
        stats = embed_model.embedder.provider.transport.stats
        print(f"{stats.requests} requests, {stats.bytes_sent / 1e3:.0f} kB sent")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "jina")
