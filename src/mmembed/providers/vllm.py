"""vLLM's OpenAI-compatible server with a pooling (embedding) model: ``POST /v1/embeddings``.

Texts travel as ``input`` (a list); images as a chat conversation in ``messages`` whose user turn holds an
``image_url`` part (``{"url": <data URI or http(s) URL>}``; vLLM fetches URLs), one conversation per embedding.
The models vLLM serves take inputs in two ways (``model_type``):

* ``"clip"`` (CLIP, SigLIP): a text *or* an image per input; both in one prompt is refused by the server, so an
  :class:`~mmembed.Interleaved` item is embedded as the mean of its parts;
* ``"vlm"`` (Qwen3-VL-Embedding, VLM2Vec, e5-v, Nemotron VL embedders): a conversation may hold text and image
  parts, so an ``Interleaved`` item is one conversation and one vector, natively.

Known model names decide it; an unknown model is ``"clip"`` unless told, the safe reading (nothing is sent that
a CLIP model would refuse). Older vLLM takes one conversation per request; servers with batched chat embeddings
(vLLM PR #45173) take a list of conversations, enabled by ``image_batch=True``. vLLM has no query field on this
route: a model's query instruction goes in ``query_prefix``. Token-embedding models (ColPali) have no
``/v1/embeddings``: :meth:`~mmembed.Embedder.embed_multi` asks ``POST /pooling`` with ``"task": "token_embed"``
(same ``input``/``messages``) and takes ``data[i].data``, one row per token or image patch. Discovery:
``GET /v1/models`` names the served model; the size comes from the first answer. With ``--api-key``
(``VLLM_API_KEY``) the ``/v1`` routes want a Bearer key. Errors come as ``{"error": {...}}`` or, from older
releases, flat ``{"object": "error", ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import numpy as np
import requests

from ..errors import ConfigurationError
from ..inputs import InterleavedItem, Item, TextItem
from ..options import Doc
from ._selfhosted import (
    CLIP_MODELS,
    VLM_KINDS,
    SelfHostedFamily,
    SelfHostedOptions,
    SelfHostedProvider,
    Served,
    ServerFamilyOptions,
    data_uri,
    describe_server_error,
    ids,
    served_models,
)
from ._types import TEXT_IMAGE, ModelInfo, Ready, Task, indexed_data

__all__ = ["VllmEmbeddings", "VllmFamilyOptions", "VllmProvider"]

MODEL_TYPES = ("clip", "vlm")
CONVERSATIONS_PER_REQUEST = 16  # with image_batch: big enough to amortise a request, small enough to spread


def _vlm(name: str, dims: int | None, side: int = 768) -> ModelInfo:
    return ModelInfo(name, dims, image_side=side, matryoshka=False, kinds=VLM_KINDS)


VLM_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("Qwen/Qwen3-VL-Embedding-2B", 2048, image_side=768, kinds=VLM_KINDS),
        ModelInfo("Qwen/Qwen3-VL-Embedding-8B", 4096, image_side=768, kinds=VLM_KINDS),
        _vlm("nvidia/llama-nemotron-embed-vl-1b-v2", 2048, 512),
        _vlm("TIGER-Lab/VLM2Vec-Full", 3072, 336),
        _vlm("royokong/e5-v", 4096, 336),
    )
}


# Token-embedding (late-interaction) models: no /v1/embeddings route, one row per token or patch on /pooling.
TOKEN_MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("vidore/colpali-v1.3-hf", None, image_side=448, matryoshka=False, multivector=128),
    )
}


class VllmFamilyOptions(ServerFamilyOptions, total=False):
    """How the served model takes inputs, and how images travel."""

    model_type: Annotated[
        str | None,
        Doc("'clip' (a text or an image per input: CLIP, SigLIP) or 'vlm' (text and images in one conversation: "
            "Qwen3-VL-Embedding, VLM2Vec...). Default: from the model's name when known, else 'clip'."),
    ]
    image_batch: Annotated[
        bool | None,
        Doc("Send several image conversations per request (servers with batched chat embeddings); default: one "
            "per request, which every vLLM version takes.", default=False, local=True),
    ]
    image_prompt: Annotated[
        str | None, Doc("A text part sent with each image to a 'vlm' model (its image instruction); default none.")
    ]


class VllmEmbeddings(SelfHostedFamily):
    """Embedding models on vLLM: texts in ``input``, images (and, for VLM embedders, text+image) in ``messages``."""

    models: ClassVar[dict[str, ModelInfo]] = {**CLIP_MODELS, **VLM_MODELS, **TOKEN_MODELS}
    settings: ClassVar[type | None] = VllmFamilyOptions
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP"})
    server_fetches_urls: ClassVar[bool] = True
    model_type: str | None
    image_batch: bool
    image_prompt: str | None

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise ConfigurationError(f"{self.name}: model_type must be 'clip' or 'vlm', not {self.model_type!r}")

    def takes_both(self) -> bool:
        """Whether one conversation may hold text and images (a VLM embedder)."""
        if self.model_type is not None:
            return self.model_type == "vlm"
        return self.info.kinds == VLM_KINDS

    def native_kinds(self) -> frozenset[str]:
        return VLM_KINDS if self.takes_both() else TEXT_IMAGE

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        return self.takes_both() and all(part.kind in TEXT_IMAGE for part in item.parts)

    def route(self, item: Item) -> str:
        if isinstance(item, TextItem):
            return "text"
        return "chat" if isinstance(item, InterleavedItem) else "image"

    def cap(self, route: str) -> int:
        if route == "text":
            return super().cap(route)
        return CONVERSATIONS_PER_REQUEST if self.image_batch else 1

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        body: dict[str, Any] = {"model": self.model, "encoding_format": "float"}
        if route == "text":
            body["input"] = [self.text(ready, task) for ready in batch]
        elif self.image_batch:
            body["messages"] = [self._conversation(ready, task) for ready in batch]
        else:  # one conversation per request: a larger batch (a caller's own cap) goes as several
            return [vector for ready in batch for vector in self._one(ready, task)]
        return self.provider.post("/v1/embeddings", self.indexed_parser(len(batch)), json=body)

    def send_multi(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        # POST /pooling, task token_embed: texts (queries) in `input`, pages as conversations in `messages`.
        body: dict[str, Any] = {"model": self.model, "task": "token_embed", "encoding_format": "float"}
        if route == "text":
            body["input"] = [self.text(ready, task) for ready in batch]
        elif self.image_batch:
            body["messages"] = [self._conversation(ready, task) for ready in batch]
        else:
            return [rows for ready in batch for rows in self._one_multi(ready, task)]
        return self.provider.post("/pooling", self.multi_parser(len(batch), "data"), json=body)

    def _one_multi(self, ready: Ready, task: Task) -> list[np.ndarray]:
        body = {"model": self.model, "task": "token_embed", "encoding_format": "float",
                "messages": self._conversation(ready, task)}
        return self.provider.post("/pooling", self.multi_parser(1, "data"), json=body)

    def _one(self, ready: Ready, task: Task) -> list[np.ndarray]:
        body = {"model": self.model, "encoding_format": "float", "messages": self._conversation(ready, task)}
        return self.provider.post("/v1/embeddings", self.indexed_parser(1), json=body)

    def _conversation(self, ready: Ready, task: Task) -> list[dict[str, Any]]:
        parts = ready.parts or (ready,)
        content: list[dict[str, Any]] = []
        if self.image_prompt and self.takes_both() and not ready.parts:
            content.append({"type": "text", "text": self.image_prompt})
        for part in parts:
            if part.text is not None:
                content.append({"type": "text", "text": self.text(part, task)})
            else:
                content.append({"type": "image_url", "image_url": {"url": data_uri(part)}})
        return [{"role": "user", "content": content}]

    def embed_raw(self, texts: list[str]) -> list[Any]:
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        return self.provider.post(
            "/v1/embeddings", lambda r: indexed_data(r, self.name, len(texts)), json=body
        )


class VllmProvider(SelfHostedProvider):
    """A vLLM server (``vllm serve <model>``) with an embedding model: CLIP, SigLIP or a VLM embedder."""

    name: ClassVar[str] = "vllm"
    title: ClassVar[str] = "VLLM"
    env_var: ClassVar[str] = "VLLM_API_KEY"
    settings: ClassVar[type] = SelfHostedOptions
    families = (VllmEmbeddings,)
    default_model: ClassVar[str] = ""  # the served one
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.vllm:Vllm",)
    test_options: ClassVar[Mapping[str, Any]] = {"model": "openai/clip-vit-base-patch32"}  # the emulator's model

    def ask_server(self) -> Served:
        return Served(ids(served_models(self.get_json("/v1/models"), self.name)))

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        message, request_id = describe_server_error(response)
        if response.status_code == 404 and message == "Not Found":
            message = ("the server has no /v1/embeddings route: its model is not an embedding model "
                       "(token-embedding models such as ColPali answer on /pooling only)")
        return message, request_id
