"""Jina AI: jina-clip-v2 (default), jina-clip-v1 and jina-embeddings-v4 over ``/v1/embeddings``.

One JSON request carries texts and images together: ``input`` items are ``{"text": ...}`` or
``{"image": <bare base64 or http(s) URL>}`` (the server fetches URLs). Queries go out with
``task: "retrieval.query"``; documents with no task on the CLIP models and ``retrieval.passage`` on v4.
``data`` comes back with an ``index`` per item and is put back in order by it; vectors are normalised
here because older responses were not unit length. jina-embeddings-v4 also gives multi-vectors
(``return_multivector: true``): ``data[i].embeddings``, one 128-d row per token or image patch.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import requests

from ..inputs import ImageItem, Item
from ._types import indexed_data
from .base import TEXT_IMAGE, ModelFamily, ModelInfo, Provider, Ready, Task

__all__ = ["JinaEmbeddings", "JinaProvider"]

# Base64 images make big bodies; past this many per request, a new request (and more concurrency) wins.
IMAGES_PER_REQUEST = 64


class JinaEmbeddings(ModelFamily):
    """Jina's embedding models on ``/v1/embeddings``: texts and images in one ``input`` list."""

    models: ClassVar[dict[str, ModelInfo]] = {
        "jina-clip-v2": ModelInfo("jina-clip-v2", 1024, image_side=512, api_dimensions=(1, 1024), max_batch=2048),
        "jina-clip-v1": ModelInfo("jina-clip-v1", 768, image_side=224, matryoshka=False, max_batch=2048),
        "jina-embeddings-v4": ModelInfo(
            "jina-embeddings-v4", 2048, image_side=512, api_dimensions=(128, 2048), max_batch=512, multivector=128
        ),
    }
    # The task field per model and purpose; None means "send no task".
    tasks: ClassVar[dict[str, dict[str, str | None]]] = {
        "jina-clip-v2": {"query": "retrieval.query", "document": None},
        "jina-clip-v1": {"query": None, "document": None},
        "jina-embeddings-v4": {"query": "retrieval.query", "document": "retrieval.passage"},
    }
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP"})
    server_fetches_urls: ClassVar[bool] = True
    default_cap: ClassVar[int] = 2048

    def reads_page_text(self) -> bool:
        # jina-embeddings-v4 is a visual document retriever: a PDF page goes as its image only.
        return self.model != "jina-embeddings-v4"

    def cap(self, route: str) -> int:
        return self.info.max_batch or self.default_cap

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if len(batch) >= self.cap(route):
            return False
        if isinstance(item, ImageItem) and item.url is None:
            return sum(isinstance(b, ImageItem) and b.url is None for b in batch) < IMAGES_PER_REQUEST
        return True

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        body = self._body(batch, task)
        if self.provider.options.dimensions is not None and self.info.api_dimensions:
            body["dimensions"] = self.provider.options.dimensions
        return self.provider.post("/v1/embeddings", self.indexed_parser(len(batch)), json=body)

    def send_multi(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        # The API refuses `dimensions` with `return_multivector`: rows keep the model's multi-vector width.
        body = {**self._body(batch, task), "return_multivector": True}

        def parse(response: requests.Response) -> list[np.ndarray]:
            rows = indexed_data(response, self.name, len(batch), field="embeddings")
            return self.finish_multi(rows, len(batch))

        return self.provider.post("/v1/embeddings", parse, json=body)

    def _body(self, batch: Sequence[Ready], task: Task) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": [self._input(r) for r in batch]}
        wire_task = self.tasks.get(self.model, {}).get(task)
        if wire_task:
            body["task"] = wire_task
        return body

    @staticmethod
    def _input(ready: Ready) -> dict[str, str]:
        if ready.text is not None:
            return {"text": ready.text}
        if ready.url is not None:
            return {"image": ready.url}
        if ready.image is None:
            raise ValueError("an item with nothing to send")  # a bug, not user input
        return {"image": base64.b64encode(ready.image.data).decode("ascii")}


class JinaProvider(Provider):
    """Jina AI: jina-clip-v2 by default (1024-d, Matryoshka), jina-clip-v1, jina-embeddings-v4."""

    name: ClassVar[str] = "jina"
    title: ClassVar[str] = "Jina"
    env_var: ClassVar[str] = "JINA_API_KEY"
    default_base_url: ClassVar[str] = "https://api.jina.ai"
    official_hosts: ClassVar[tuple[str, ...]] = ("api.jina.ai",)
    families = (JinaEmbeddings,)
    default_model: ClassVar[str] = "jina-clip-v2"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.jina:Jina",)
    default_concurrency: ClassVar[int] = 5  # the free tier allows 5 concurrent requests
    default_requests_per_minute: ClassVar[float | None] = 500
    rate_window: ClassVar[float] = 60.0  # 500 requests per minute (free tier)

    def error_message(self, body: dict[str, Any], response: requests.Response) -> str | None:
        message = super().error_message(body, response) or f"HTTP {response.status_code}"
        code = body.get("code")
        return f"{message} ({code})" if code else message

    def request_id(self, response: requests.Response, body: dict[str, Any]) -> str | None:
        return str(body.get("request_id") or super().request_id(response, body) or "") or None
