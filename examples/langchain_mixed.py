"""Texts and photos in one persistent langchain-chroma store, embedded by mmembed.

    python examples/langchain_mixed.py [jina|nomic|vertex|gemini]

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
from langchain_chroma import Chroma

from mmembed.chroma import query_mixed
from mmembed.langchain import EmbedderEmbeddings, embeddings_class
from mmembed.testing import Emulator, colour_photo

LIVE_ENV = {
    "jina": ("JINA_API_KEY",),
    "nomic": ("NOMIC_API_KEY",),
    "vertex": ("GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT"),
    "gemini": ("GEMINI_API_KEY",),
}
TEXTS = ["The sea was a deep blue that day", "A red fire truck parked outside", "Bananas ripen on the counter"]
COLOURS = ["red", "blue", "green", "yellow"]


def embeddings_for(provider: str, stack: contextlib.ExitStack) -> EmbedderEmbeddings:
    """The live API if its key is set, else the offline emulator (and say which on stdout)."""
    cls = embeddings_class(provider)
    if all(os.environ.get(var) for var in LIVE_ENV[provider]):
        print(f"{provider}: live API ({LIVE_ENV[provider][0]} is set)")
        return cls()
    emulator = stack.enter_context(Emulator())
    print(f"{provider}: no {LIVE_ENV[provider][0]} set, so using the offline emulator at {emulator.url} (fake vectors)")
    options: dict[str, Any] = {"project_id": "demo-project"} if provider == "vertex" else {}
    return cls(api_key="emulator-key", base_url=emulator.url, **options)


def label(metadata: dict[str, Any], content: str) -> str:
    return f"photo {metadata['colour']}" if metadata["modality"] == "image" else f"text {content!r}"


def main(provider: str = "jina") -> None:
    with contextlib.ExitStack() as stack:
        embeddings = embeddings_for(provider, stack)
        stack.callback(embeddings.close)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        photos = []
        for colour in COLOURS:
            photos.append(folder / f"{colour}.jpg")
            colour_photo(colour, size=(1600, 1200)).save(photos[-1], quality=90)
        probe = folder / "another-red.jpg"
        colour_photo("red", size=(1200, 900), seed=7).save(probe, quality=90)

        # Pass the client yourself: client.get_collection() is then the public way to the store's collection.
        client = chromadb.PersistentClient(path=str(folder / "db"))
        store = Chroma("media", embedding_function=embeddings, client=client)
        # Tag each record with its modality, so searches can be restricted to one (and fused across both).
        store.add_texts(TEXTS, metadatas=[{"modality": "text"} for _ in TEXTS])
        store.add_images([str(p) for p in photos], metadatas=[{"modality": "image", "colour": c} for c in COLOURS])

        plain = store.similarity_search("something yellow", k=4)
        print("'something yellow' (plain) ->", ", ".join(label(d.metadata, d.page_content) for d in plain))
        if all(d.metadata["modality"] == "text" for d in plain[:3]):
            print("  (texts outrank every photo: text-text similarities dwarf text-image ones, the modality gap)")
        (hit,) = store.similarity_search("something yellow", k=1, filter={"modality": "image"})
        print(f"'something yellow' (images only) -> {label(hit.metadata, hit.page_content)}")
        (hit,) = store.similarity_search_by_image(str(probe), k=1)
        print(f"photo of something red -> {label(hit.metadata, hit.page_content)}")

        # Or rank each modality on its own and merge the hits by calibrated relevance (scores above 2 stand out).
        fused = query_mixed(
            client.get_collection("media"), query_texts=["banana"], n_results=3, embedder=embeddings.embedder
        )
        hits = zip(fused["metadatas"][0], fused["documents"][0], fused["scores"][0], strict=True)
        print("'banana' (fused)  ->", ", ".join(f"{label(m, d or '')} ({s:.1f})" for m, d, s in hits))

        stats = embeddings.embedder.provider.transport.stats
        sent, size = stats.bytes_sent / 1e3, sum(p.stat().st_size for p in photos) / len(photos) / 1e3
        print(f"{stats.requests} requests, {sent:.0f} kB sent in all for 5 photos whose files average {size:.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "jina")
