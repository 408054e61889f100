"""Nomic Atlas: nomic-embed-text-v1.5 for texts and nomic-embed-vision-v1.5 for images, one shared space.

Wire format (PROVIDERS.md): texts as JSON to ``/v1/embedding/text`` (at most 10 per request,
``task_type`` ``search_document`` / ``search_query``, ``dimensionality`` on v1.5); images as multipart to
``/v1/embedding/image`` (a ``model`` field and one ``images`` part per image, at most 512), or as
``urls`` form fields that the server fetches. The image endpoint has no ``dimensionality``, so image
vectors are truncated and re-normalised here to match the text vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import requests

from ..errors import InvalidResponseError
from ..inputs import ImageItem, Item, TextItem
from .base import TEXT_IMAGE, ModelInfo, Provider, ProviderOptions, Ready, Task, json_body

__all__ = ["NomicProvider"]

TEXT_MODELS = {
    "nomic-embed-text-v1.5": ModelInfo("nomic-embed-text-v1.5", 768, api_dimensions=(64, 768)),
    "nomic-embed-text-v1": ModelInfo("nomic-embed-text-v1", 768, matryoshka=False),
}
VISION_MODELS = {
    "nomic-embed-vision-v1.5": ModelInfo("nomic-embed-vision-v1.5", 768, image_side=336),
    "nomic-embed-vision-v1": ModelInfo("nomic-embed-vision-v1", 768, image_side=336, matryoshka=False),
}
# Which vision model shares a space with which text model.
PAIRS = {"nomic-embed-text-v1.5": "nomic-embed-vision-v1.5", "nomic-embed-text-v1": "nomic-embed-vision-v1"}
TASKS: dict[str, str] = {"document": "search_document", "query": "search_query"}
TEXT_CAP = 10
IMAGE_CAP = 512


class NomicProvider(Provider):
    """Nomic Atlas: nomic-embed-text-v1.5 and nomic-embed-vision-v1.5 (768-d, one space)."""

    name: ClassVar[str] = "nomic"
    title: ClassVar[str] = "Nomic"
    option_names: ClassVar[tuple[str, ...]] = ("text_model", "vision_model")
    model_keys: ClassVar[tuple[str, ...]] = ("text_model", "vision_model")
    env_var: ClassVar[str] = "NOMIC_API_KEY"
    default_base_url: ClassVar[str] = "https://api-atlas.nomic.ai"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.nomic:NomicText", "mmembed.testing.nomic:NomicImage")
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP"})
    server_fetches_urls: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 8
    default_requests_per_minute: ClassVar[float | None] = 1200 / 5
    rate_window: ClassVar[float] = 300.0  # 1200 requests per 5-minute window, per IP
    # Listed by vision model (the text model names the pair): both read text and images, nothing else.
    model_kinds: ClassVar[dict[str, frozenset[str]]] = {name: TEXT_IMAGE for name in VISION_MODELS}

    def __init__(
        self,
        options: ProviderOptions,
        *,
        text_model: str | None = None,
        vision_model: str | None = None,
    ) -> None:
        super().__init__(options)
        self.text_model = text_model or "nomic-embed-text-v1.5"
        self.vision_model = vision_model or PAIRS.get(self.text_model, "nomic-embed-vision-v1.5")
        self._text_info = TEXT_MODELS.get(self.text_model) or ModelInfo(self.text_model, None, known=False)
        self._vision_info = VISION_MODELS.get(self.vision_model) or ModelInfo(
            self.vision_model, None, image_side=336, known=False
        )
        self.check_dimensions(self._text_info)
        self.check_dimensions(self._vision_info)
        if self.dimensions is None:
            self.dimensions = self._text_info.dimensions

    def model_names(self) -> dict[str, str]:
        return {"text_model": self.text_model, "vision_model": self.vision_model}

    def image_model(self) -> ModelInfo:
        return self._vision_info

    def route(self, item: Item) -> str:
        if isinstance(item, TextItem):
            return "text"
        return "image_url" if isinstance(item, ImageItem) and item.url is not None else "image"

    def cap(self, route: str) -> int:
        return TEXT_CAP if route == "text" else IMAGE_CAP

    def model_for(self, item: Item) -> str:
        return self.text_model if isinstance(item, TextItem) else self.vision_model

    def task_key(self, item: Item, task: Task) -> str:
        # The image endpoint has no task_type: one image vector serves documents and queries alike.
        return task if isinstance(item, TextItem) else "-"

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        if route == "text":
            body: dict[str, Any] = {
                "model": self.text_model,
                "texts": [r.text for r in batch],
                "task_type": TASKS[task],
            }
            if self.options.dimensions is not None and self._text_info.api_dimensions:
                body["dimensionality"] = self.options.dimensions
            return self.transport.post(
                f"{self.base_url}/v1/embedding/text", self._parser(len(batch)), headers=self._headers(), json=body
            )
        url = f"{self.base_url}/v1/embedding/image"
        if route == "image_url":
            fields = [("model", self.vision_model)] + [("urls", str(r.url)) for r in batch]
            return self.transport.post(url, self._parser(len(batch)), headers=self._headers(), data=fields)
        files: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
            ("model", (None, self.vision_model, None))
        ]
        for i, ready in enumerate(batch):
            image = ready.image
            if image is None:
                raise ValueError("image route got an item without image bytes")  # a bug, not user input
            ext = image.media_type.rsplit("/", 1)[-1]
            files.append(("images", (f"image{i}.{ext}", image.data, image.media_type)))
        return self.transport.post(url, self._parser(len(batch)), headers=self._headers(), files=files)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            vectors = body.get("embeddings") if isinstance(body, dict) else None
            if not isinstance(vectors, list):
                raise InvalidResponseError("response has no 'embeddings' list", provider=self.name, body=response.text)
            return self.finish(vectors, expected)

        return parse

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        message, request_id = super().describe_error(response)
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            return message, request_id
        if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}]
            parts = [f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict)]
            message = "; ".join(parts) or message
        return message, request_id
