"""Late interaction (ColPali-style multi-vectors) in Chroma: MUVERA candidates, exact MaxSim re-ranking.

    python examples/late_interaction.py

Multi-vectors are one vector per token or page patch. Here they come precomputed, as they would from ColPali
on your own GPU; to stay offline they are asked of mmembed's emulator, which answers Jina v4's
``return_multivector`` with FAKE vectors shaped like the real ones (128 floats per token, 16 patches per image).
The collection persists in a temporary directory and is reopened by name, as another process would. Last,
the same with ``items=``/``query_texts=``: the collection's mmembed function embeds them (``embed_multi``).
"""

from __future__ import annotations

import base64
import io
import tempfile
from typing import Any

import chromadb
import numpy as np
import requests

from mmembed.chroma import add_late, create_late_collection, function_class, query_late
from mmembed.late import MuveraSettings
from mmembed.testing import Emulator, colour_photo

DOCUMENTS = {
    "car": "a red car parked on the street",
    "sea": "the blue sea under a clear sky",
    "forest": "green leaves in a quiet forest",
    "invoice": "invoice total due in thirty days",
}
PHOTOS = {"red-photo": "red", "blue-photo": "blue"}


def png(colour: str) -> str:
    buf = io.BytesIO()
    colour_photo(colour, size=(160, 120)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def multivectors(url: str, inputs: list[Any], task: str) -> list[np.ndarray]:
    """Your model's output: one (tokens x 128) array per input. Here: the emulator, over HTTP."""
    reply = requests.post(
        f"{url}/v1/embeddings",
        headers={"Authorization": "Bearer emulator-key"},
        json={"model": "jina-embeddings-v4", "task": task, "return_multivector": True, "input": inputs},
        timeout=60,
    )
    reply.raise_for_status()
    return [np.array(d["embeddings"], dtype=np.float32) for d in sorted(reply.json()["data"], key=lambda d: d["index"])]


def main() -> None:
    with Emulator() as emulator, tempfile.TemporaryDirectory() as path:
        ids = [*DOCUMENTS, *PHOTOS]
        inputs = [{"text": t} for t in DOCUMENTS.values()] + [{"image": png(c)} for c in PHOTOS.values()]
        client = chromadb.PersistentClient(path)
        pages = create_late_collection(client, "pages", MuveraSettings(seed=42))
        add_late(pages, ids, multivectors=multivectors(emulator.url, inputs, "retrieval.passage"),
                 metadatas=[{"kind": "text"}] * len(DOCUMENTS) + [{"kind": "image"}] * len(PHOTOS))

        reopened = chromadb.PersistentClient(path).get_collection("pages")  # settings and seed come with it
        queries = ["red car", "blue sea"]
        result = query_late(reopened, query_multivectors=multivectors(emulator.url, queries, "retrieval.query"),
                            n_results=3)
        for query, hits, scores in zip(queries, result["ids"], result["maxsim_scores"], strict=True):
            ranked = ", ".join(f"{id_} ({score:.2f})" for id_, score in zip(hits, scores, strict=True))
            print(f"query {query!r}: {ranked}")
        images = query_late(reopened, query_multivectors=multivectors(emulator.url, ["red"], "retrieval.query"),
                            n_results=1, where={"kind": "image"})
        print(f"the image for 'red': {images['ids'][0][0]}")

        # Or let the collection's mmembed function embed the items (Embedder.embed_multi; PDFs page by page).
        ef = function_class("jina")(model="jina-embeddings-v4", base_url=emulator.url, api_key="emulator-key")
        docs = create_late_collection(client, "docs", embedding_function=ef)
        add_late(docs, list(DOCUMENTS), items=list(DOCUMENTS.values()))
        best = query_late(docs, query_texts=["invoice due"], n_results=1)["ids"][0][0]
        print(f"query_texts 'invoice due', through the embedder: {best}")


if __name__ == "__main__":
    main()
