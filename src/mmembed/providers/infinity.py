"""Infinity (michaelfeil/infinity): ``POST /embeddings`` with one ``modality`` per request.

A request carries texts, images or audio clips, never a mix: ``{"model", "input": [...], "modality": "text" |
"image" | "audio"}``; images and audio travel as http(s) URLs (the server fetches them) or ``data:`` URIs (bare
base64 is refused). Caps: 2048 texts, 32 images or audio clips a request. No query field: a model's query
instruction goes in ``query_prefix``. Discovery: ``GET /models`` lists each served model with its
``capabilities`` (``embed``, ``image_embed``, ``audio_embed``), which say the kinds it takes; the size comes
from the first answer. A ColPali/ColQwen2 merged checkpoint answers each ``embedding`` as a list of token rows
(not re-normalised: normalised here), for :meth:`~mmembed.Embedder.embed_multi`. A full queue (32 000 items per
model by default) answers 429 without ``Retry-After``.
Started with ``--url-prefix /v1``, its routes move under ``/v1``: put that in ``base_url``
(``http://host:7997/v1``). ``INFINITY_API_KEY`` on the server means a Bearer key on every route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..inputs import AudioItem, Item, TextItem
from ._selfhosted import (
    CLIP_MODELS,
    TEXT_MODELS,
    SelfHostedFamily,
    SelfHostedProvider,
    Served,
    data_uri,
    served_models,
)
from ._types import TEXT_IMAGE, ModelInfo, Ready, Task, indexed_data

__all__ = ["InfinityEmbeddings", "InfinityProvider"]

TEXTS_PER_REQUEST = 256  # the server takes 2048; smaller requests spread better over its batches
MEDIA_PER_REQUEST = 32  # the server's cap for images and audio
CAPABILITY_KINDS = {"embed": "text", "image_embed": "image", "audio_embed": "audio"}
_TEXT_AUDIO = frozenset({"text", "audio"})

AUDIO_MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name, 512, matryoshka=False, kinds=_TEXT_AUDIO)
    for name in ("laion/clap-htsat-unfused", "laion/larger_clap_general")
}
# ColPali / ColQwen2 merged checkpoints: `embedding` is a list of 128-d token rows (not re-normalised).
TOKEN_MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name, None, image_side=448, matryoshka=False, multivector=128)
    for name in ("michaelfeil/colpali-v1.2-merged", "michaelfeil/colqwen2-v0.1")
}


class InfinityEmbeddings(SelfHostedFamily):
    """Models on Infinity: one modality per request, images and audio as URLs or data URIs."""

    models: ClassVar[dict[str, ModelInfo]] = {**CLIP_MODELS, **TEXT_MODELS, **AUDIO_MODELS, **TOKEN_MODELS}
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP"})
    server_fetches_urls: ClassVar[bool] = True

    def route(self, item: Item) -> str:
        if isinstance(item, TextItem):
            return "text"
        return "audio" if isinstance(item, AudioItem) else "image"

    default_cap: ClassVar[int] = TEXTS_PER_REQUEST

    def cap(self, route: str) -> int:
        return super().cap(route) if route == "text" else MEDIA_PER_REQUEST

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        return self.provider.post("/embeddings", self.indexed_parser(len(batch)), json=self._body(route, batch, task))

    def send_multi(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        # The same request: a ColPali-family model answers each `embedding` as its rows.
        parse = self.multi_parser(len(batch), "embedding")
        return self.provider.post("/embeddings", parse, json=self._body(route, batch, task))

    def _body(self, route: str, batch: Sequence[Ready], task: Task) -> dict[str, Any]:
        if route == "text":
            inputs = [self.text(ready, task) for ready in batch]
        else:
            inputs = [data_uri(ready) for ready in batch]
        return {"model": self.model, "input": inputs, "modality": route, "encoding_format": "float"}

    def embed_raw(self, texts: list[str]) -> list[Any]:
        body = {"model": self.model, "input": texts, "modality": "text", "encoding_format": "float"}
        return self.provider.post("/embeddings", lambda r: indexed_data(r, self.name, len(texts)), json=body)


class InfinityProvider(SelfHostedProvider):
    """An Infinity server (``infinity_emb v2 --model-id ...``): CLIP, SigLIP, CLAP and text models."""

    name: ClassVar[str] = "infinity"
    title: ClassVar[str] = "Infinity"
    env_var: ClassVar[str] = "INFINITY_API_KEY"
    families = (InfinityEmbeddings,)
    default_model: ClassVar[str] = ""  # the served one
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.infinity:Infinity",)
    test_options: ClassVar[Mapping[str, Any]] = {"model": "openai/clip-vit-base-patch32"}  # the emulator's model
    strips_v1: ClassVar[bool] = False  # its paths have no /v1 of their own: a /v1 in base_url is its url prefix

    def ask_server(self) -> Served:
        entries = served_models(self.get_json("/models"), self.name)
        named = self.family.model if self.family.named else None
        if named is None and len(entries) > 1:
            raise ConfigurationError(
                f"{self.name}: the server at {self.base_url} serves several models "
                f"({', '.join(str(e['id']) for e in entries)}); choose one with model=..."
            )
        entry = next((e for e in entries if e["id"] == named), entries[0] if entries else None)
        kinds = None
        if entry is not None and isinstance(entry.get("capabilities"), list):
            kinds = frozenset(CAPABILITY_KINDS[c] for c in entry["capabilities"] if c in CAPABILITY_KINDS)
        return Served(tuple(str(e["id"]) for e in entries), kinds=kinds or None)
