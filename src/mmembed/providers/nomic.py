"""Nomic Atlas: nomic-embed-text-v1.5 for texts and nomic-embed-vision-v1.5 for images, one shared space.

Wire format (PROVIDERS.md): texts as JSON to ``/v1/embedding/text`` (at most 10 per request,
``task_type`` ``search_document`` / ``search_query``, ``dimensionality`` on v1.5); images as multipart to
``/v1/embedding/image`` (a ``model`` field and one ``images`` part per image, at most 512), or as
``urls`` form fields that the server fetches. The image endpoint has no ``dimensionality``, so image
vectors are truncated and re-normalised here to match the text vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, TypedDict

import numpy as np
import requests

from ..errors import InvalidResponseError
from ..inputs import ImageItem, Item, TextItem
from ..options import Doc
from .base import TEXT_IMAGE, ModelFamily, ModelInfo, Provider, Ready, Task, json_body

__all__ = ["NomicEmbeddings", "NomicModels", "NomicProvider"]

DEFAULT_TEXT_MODEL = "nomic-embed-text-v1.5"
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


class NomicModels(TypedDict, total=False):
    """The two models of one Nomic space (Nomic takes no ``model=``: a text model and a vision model)."""

    text_model: Annotated[str | None, Doc(f"Nomic's text model (default {DEFAULT_TEXT_MODEL}).", model=True)]
    vision_model: Annotated[
        str | None, Doc("Nomic's vision model (default: the one sharing text_model's space).", model=True)
    ]


class _NoModel(TypedDict, total=False):
    """Nomic's own options: none (its family names its models)."""


class NomicEmbeddings(ModelFamily):
    """A Nomic text model and the vision model trained into its space: texts as JSON, images as multipart."""

    models: ClassVar[dict[str, ModelInfo]] = {**TEXT_MODELS, **VISION_MODELS}
    settings: ClassVar[type | None] = NomicModels
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP"})
    server_fetches_urls: ClassVar[bool] = True
    unknown_image_side: ClassVar[int] = 336
    text_model: str
    vision_model: str

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        self.text_model = self.model  # the provider chose it (text_model=, or the default)
        self.vision_model = self.vision_model or PAIRS.get(self.model, "nomic-embed-vision-v1.5")
        self.vision_info = VISION_MODELS.get(self.vision_model) or self.unknown(self.vision_model)
        self.check_dimensions(self.vision_info)

    def model_names(self) -> dict[str, str]:
        return {"text_model": self.text_model, "vision_model": self.vision_model}

    def image_model(self) -> ModelInfo:
        return self.vision_info

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
        parse = self._parser(len(batch))
        if route == "text":
            body: dict[str, Any] = {"model": self.text_model, "texts": [r.text for r in batch]}
            body["task_type"] = TASKS[task]
            if self.provider.options.dimensions is not None and self.info.api_dimensions:
                body["dimensionality"] = self.provider.options.dimensions
            return self.provider.post("/v1/embedding/text", parse, json=body)
        if route == "image_url":
            fields = [("model", self.vision_model)] + [("urls", str(r.url)) for r in batch]
            return self.provider.post("/v1/embedding/image", parse, data=fields)
        files: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
            ("model", (None, self.vision_model, None))
        ]
        for i, ready in enumerate(batch):
            image = ready.image
            if image is None:
                raise ValueError("image route got an item without image bytes")  # a bug, not user input
            ext = image.media_type.rsplit("/", 1)[-1]
            files.append(("images", (f"image{i}.{ext}", image.data, image.media_type)))
        return self.provider.post("/v1/embedding/image", parse, files=files)

    def _parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            vectors = body.get("embeddings") if isinstance(body, dict) else None
            if not isinstance(vectors, list):
                raise InvalidResponseError("response has no 'embeddings' list", provider=self.name, body=response.text)
            return self.finish(vectors, expected)

        return parse


class NomicProvider(Provider):
    """Nomic Atlas: nomic-embed-text-v1.5 and nomic-embed-vision-v1.5 (768-d, one space)."""

    name: ClassVar[str] = "nomic"
    title: ClassVar[str] = "Nomic"
    env_var: ClassVar[str] = "NOMIC_API_KEY"
    default_base_url: ClassVar[str] = "https://api-atlas.nomic.ai"
    official_hosts: ClassVar[tuple[str, ...]] = ("api-atlas.nomic.ai",)
    settings: ClassVar[type] = _NoModel
    families = (NomicEmbeddings,)
    default_model: ClassVar[str] = DEFAULT_TEXT_MODEL
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.nomic:NomicText", "mmembed.testing.nomic:NomicImage")
    default_concurrency: ClassVar[int] = 8
    default_requests_per_minute: ClassVar[float | None] = 1200 / 5
    rate_window: ClassVar[float] = 300.0  # 1200 requests per 5-minute window, per IP

    def choose_model(self, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # The text model names the pair (the family resolves the vision model that shares its space).
        return settings.get("text_model") or self.default_model, settings

    def error_message(self, body: dict[str, Any], response: requests.Response) -> str | None:
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}]
            parts = [f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict)]
            return "; ".join(parts) or super().error_message(body, response)
        return super().error_message(body, response)
