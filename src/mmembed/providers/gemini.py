"""Google ``gemini-embedding-2`` on the Gemini Developer API: ``models/{m}:batchEmbedContents``, an API key.

One ``EmbedContentRequest`` per item, at most 100 per call, each naming ``"model": "models/{m}"`` and carrying
exactly one item's ``content``. Items are never merged: all parts of one content make **one** vector, which
is why Google's SDKs, which join consecutive strings into one content for this model, return one vector for
many texts. ``outputDimensionality`` goes in every request. Tasks are prompt prefixes on texts
(``task: search result | query: …`` / ``title: none | text: …``), not ``taskType``, which only the text-only
``gemini-embedding-001`` takes. Images go inline as PNG or JPEG; ``http(s)`` URLs are downloaded here, under
the download policy. The key travels in the ``x-goog-api-key`` header, never in the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import requests

from ..errors import InputError, InvalidResponseError
from ..inputs import ImageItem, InterleavedItem, Item, TextItem
from . import _google
from .base import ALL_KINDS, ModelInfo, Provider, ProviderOptions, Ready, Task, json_body

__all__ = ["GeminiProvider"]

# Images: shortest side 768 (the tile Gemini's vision encoder works in), longest at most 2048 (see the README).
MODELS = {
    name: ModelInfo(name, 3072, image_side=768, max_side=2048, api_dimensions=(128, 3072), max_batch=100)
    for name in ("gemini-embedding-2", "gemini-embedding-2-preview", "gemini-embedding-001")
}
MULTIMODAL = frozenset({"gemini-embedding-2", "gemini-embedding-2-preview"})
TASK_TYPE_MODELS = frozenset({"gemini-embedding-001", "text-embedding-004", "embedding-001"})
MAX_REQUESTS = 100  # per batchEmbedContents call (the 101st is a 400)
# Inline images make big bodies (base64): past this many per call, another request (and concurrency) wins.
# 16 photos at 2048x768 stay well under the ~20 MB of inline data one call should carry.
IMAGES_PER_REQUEST = 16
# ... and past this many bytes of inline PDFs, video and audio (a batch should stay under ~20 MB of inline data).
INLINE_BYTES_PER_REQUEST = 12 * 1024 * 1024


class GeminiProvider(Provider):
    """Google gemini-embedding-2 on the Gemini Developer API (text and images in one space; an API key)."""

    name: ClassVar[str] = "gemini"
    title: ClassVar[str] = "Gemini"
    env_var: ClassVar[str] = "GEMINI_API_KEY"
    fallback_env_vars: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY",)
    option_names: ClassVar[tuple[str, ...]] = ("model", "query_template", "document_template")
    model_keys: ClassVar[tuple[str, ...]] = ("model",)
    extra_keys: ClassVar[tuple[str, ...]] = ("query_template", "document_template")
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.gemini:GeminiApi",)
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = 100  # the free tier's limit; a batch is one request
    rate_window: ClassVar[float] = 60.0  # a per-minute quota per project and model
    kinds: ClassVar[frozenset[str]] = ALL_KINDS  # unknown models: assumed multimodal, as gemini-embedding-2
    model_kinds: ClassVar[dict[str, frozenset[str]]] = {
        "gemini-embedding-2": ALL_KINDS,
        "gemini-embedding-2-preview": ALL_KINDS,
        "gemini-embedding-001": frozenset({"text"}),
    }

    def __init__(
        self,
        options: ProviderOptions,
        *,
        model: str | None = None,
        query_template: str | None = None,
        document_template: str | None = None,
    ) -> None:
        super().__init__(options)
        self.model = model or "gemini-embedding-2"
        self.info = MODELS.get(self.model) or ModelInfo(self.model, None, image_side=768, max_side=2048, known=False)
        self.check_dimensions(self.info)
        if self.dimensions is None:
            self.dimensions = self.info.dimensions
        self.query_template = _google.check_template("query_template", query_template or _google.QUERY_TEMPLATE)
        self.document_template = _google.check_template(
            "document_template", document_template or _google.DOCUMENT_TEMPLATE
        )
        self.uses_task_type = self.model in TASK_TYPE_MODELS
        self.multimodal = self.model in MULTIMODAL or not (self.info.known or self.uses_task_type)

    def model_names(self) -> dict[str, str]:
        return {"model": self.model}

    def image_model(self) -> ModelInfo:
        return self.info

    def route(self, item: Item) -> str:
        return "content"

    def cap(self, route: str) -> int:
        return self.info.max_batch or MAX_REQUESTS

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if len(batch) >= self.cap(route):
            return False
        if isinstance(item, ImageItem):
            return sum(isinstance(b, ImageItem) for b in batch) < IMAGES_PER_REQUEST
        size = _google.inline_size(item)
        return not size or sum(_google.inline_size(b) for b in batch) + size <= INLINE_BYTES_PER_REQUEST

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        return super().takes_interleaved(item) and _google.one_content(item)

    def task_key(self, item: Item, task: Task) -> str:
        # Media go bare whatever the task, so a query image and a document image share a cache entry.
        if not isinstance(item, TextItem):
            return "media"
        if self.uses_task_type:
            return task
        return f"{task}:{self.query_template if task == 'query' else self.document_template}"

    def prepare(self, item: Item) -> Ready:
        if not self.multimodal and not isinstance(item, TextItem):
            models = " or ".join(sorted(MULTIMODAL))
            raise InputError(f"gemini: {self.model} embeds text only; use model={models} for images")
        _google.check_media_type(item)
        return super().prepare(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        requests_ = [self._request(ready, task) for ready in batch]
        return self.transport.post(
            f"{self.base_url}/v1beta/models/{self.model}:batchEmbedContents",
            self._parser(len(batch)),
            headers={"x-goog-api-key": self._api_key or ""},
            json={"requests": requests_},
        )

    def _request(self, ready: Ready, task: Task) -> dict[str, Any]:
        template = None
        if not self.uses_task_type:
            template = self.query_template if task == "query" else self.document_template
        request: dict[str, Any] = {"model": f"models/{self.model}", "content": _google.content(ready, template)}
        if self.uses_task_type:
            request["taskType"] = _google.TASK_TYPES[task]
        if self.dimensions is not None:
            request["outputDimensionality"] = self.dimensions
        return request

    def _parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            embeddings = body.get("embeddings") if isinstance(body, dict) else None
            if not isinstance(embeddings, list):
                raise InvalidResponseError("response has no 'embeddings' list", provider=self.name, body=response.text)
            try:
                vectors = [e["values"] for e in embeddings]
            except (KeyError, TypeError) as exc:
                raise InvalidResponseError("malformed 'embeddings' entries", provider=self.name) from exc
            return self.finish(vectors, expected)

        return parse

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        return _google.describe_error(response)

    def is_auth_error(self, response: requests.Response) -> bool:
        return _google.is_auth_error(response)

    def retry_after(self, response: requests.Response) -> float | None:
        return _google.retry_delay(response)
