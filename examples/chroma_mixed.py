"""A Chroma collection holding texts and images together, queried so that both modalities compete fairly.

    python examples/chroma_mixed.py [jina|nomic|vertex|gemini]      # default: jina

With the provider's key in the environment (JINA_API_KEY, NOMIC_API_KEY, GEMINI_API_KEY, or GOOGLE_API_KEY
plus GOOGLE_CLOUD_PROJECT for Vertex) this calls the live API. Without it, it starts mmembed's offline emulator,
which answers with fake vectors shaped like a real model's (so the ranking still shows the point), and says so.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings

from mmembed.chroma import (
    ImageURILoader,
    JinaMultimodalEmbeddingFunction,
    MultimodalEmbeddingFunction,
    NomicMultimodalEmbeddingFunction,
    VertexMultimodalEmbeddingFunction,
    add_mixed,
    function_class,
    query_mixed,
)
from mmembed.testing import Emulator, colour_photo

FUNCTIONS: dict[str, type[MultimodalEmbeddingFunction]] = {
    "jina": JinaMultimodalEmbeddingFunction,
    "nomic": NomicMultimodalEmbeddingFunction,
    "vertex": VertexMultimodalEmbeddingFunction,
    "gemini": function_class("gemini"),
}
KEY_VARS = {"jina": "JINA_API_KEY", "nomic": "NOMIC_API_KEY", "vertex": "GOOGLE_API_KEY", "gemini": "GEMINI_API_KEY"}
TEXTS = {"text-red": "a ripe red strawberry", "text-blue": "a calm blue lake", "text-green": "fresh green grass"}
PHOTOS = {"photo-red": "red", "photo-blue": "blue", "photo-yellow": "yellow"}


def embedding_function(provider: str, stack: ExitStack) -> MultimodalEmbeddingFunction:
    """The live function when its key is set, else one pointed at a local emulator."""
    options: dict[str, Any] = {}
    if os.environ.get(KEY_VARS[provider]):
        print(f"Using the live {provider} API ({KEY_VARS[provider]} is set).")
    else:
        emulator = stack.enter_context(Emulator())
        print(
            f"No {KEY_VARS[provider]} set: using mmembed's offline emulator at {emulator.url} "
            "(fake vectors, for demos and tests only)."
        )
        options = {"base_url": emulator.url, "api_key": "emulator"}
        if provider == "vertex":
            options["project_id"] = "demo-project"
    ef = FUNCTIONS[provider](**options)
    stack.callback(ef.close)
    return ef


def show(title: str, result: Any) -> None:
    print(f"  {title}")
    for i, id_ in enumerate(result["ids"][0]):
        what = result["documents"][0][i] or Path(result["uris"][0][i]).name
        score = f"  relevance {result['scores'][0][i]:7.1f}" if "scores" in result else ""
        print(f"    {id_:<12} distance {result['distances'][0][i]:.3f}{score}  {what}")


def main() -> int:
    provider = sys.argv[1] if len(sys.argv) > 1 else "jina"
    if provider not in FUNCTIONS:
        print(f"usage: {sys.argv[0]} [{'|'.join(FUNCTIONS)}]", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ef = embedding_function(provider, stack)
        photos = []
        for colour in PHOTOS.values():
            path = workdir / f"{colour}.jpg"
            colour_photo(colour, (1200, 900)).save(path, quality=90)
            photos.append(path)

        client = stack.enter_context(
            chromadb.PersistentClient(path=str(workdir / "chroma"), settings=Settings(anonymized_telemetry=False))
        )
        collection = client.create_collection("mixed", embedding_function=ef, data_loader=ImageURILoader())
        add_mixed(collection, [*TEXTS, *PHOTOS], [*TEXTS.values(), *photos])  # one call, one embedding pass
        print(f"Added {len(TEXTS)} texts and {len(PHOTOS)} photos to one collection.\n")

        print("Query 'red':")
        show(
            "plain Chroma query (with a CLIP-style modality gap, every text outranks every photo)",
            collection.query(query_texts=["red"], n_results=4, include=["documents", "uris", "distances"]),
        )
        show(
            "query_mixed (each modality ranked on its own, merged by calibrated relevance)",
            query_mixed(collection, query_texts=["red"], n_results=4),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
