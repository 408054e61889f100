"""Cohere: embed-v4.0 over ``/v2/embed``, texts and images in one ``inputs`` list.

Every item is one ``inputs[]`` entry whose ``content`` holds typed segments: ``{"type": "text", "text": ...}``
or ``{"type": "image_url", "image_url": {"url": "data:image/...;base64,..."}}`` (an object with ``url``, not a
bare string). Each input comes back as ONE vector, so a mixed stream needs no second route, and texts-only
batches use ``inputs`` too (one request shape, pinned in tests). ``embedding_types: ["float"]`` is always sent;
queries go out with ``input_type: "search_query"``, documents with ``"search_document"``.

Limits (PROVIDERS-NEXT §5): at most 96 inputs and 20 MB of images per request (counted here on the data URIs,
which :meth:`CohereProvider.send` packs exactly); images over 1568x1568 pixels are downsampled by the server,
so none is uploaded larger. Cohere limits images apart from texts: Embed takes 2,000 inputs a minute, Embed
(Images) 400 a minute on production keys but only 5 on trial keys. Both are kept here by sliding windows of
inputs; ``images_per_minute`` (default 400) sets the image one, and no request carries more images than it
allows in a minute. Cohere's URLs are never fetched by the server: http(s) images are downloaded here.
Errors are ``{"id", "message"}``.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import requests

from ..errors import ConfigurationError, InvalidResponseError
from ..images import prepare_image
from ..inputs import ImageItem, InterleavedItem, Item
from .base import ModelInfo, Provider, ProviderOptions, Ready, Task, json_body

__all__ = ["CohereProvider", "InputWindow"]

# Shortest side 1024 (a 4:3 page at 1365x1024 keeps small print legible), longest at most 1568: the most
# embed-v4.0 sees (it downsamples anything over 1568x1568).
MODELS = {
    "embed-v4.0": ModelInfo(
        "embed-v4.0", 1536, image_side=1024, dimension_choices=(256, 512, 1024, 1536), max_batch=96
    ),
}
DEFAULT_MODEL = "embed-v4.0"
INPUT_CAP = 96
MAX_SIDE = 1568
IMAGE_BYTES_CAP = 20_000_000  # of data URIs per request
INPUTS_PER_MINUTE = 2000  # "Embed": the same on trial and production keys
IMAGES_PER_MINUTE = 400  # "Embed (Images)" on production keys; trial keys: 5
INPUT_TYPES: dict[str, str] = {"document": "search_document", "query": "search_query"}
Content = tuple[list[dict[str, Any]], int, int]  # one input's segments, its images, their data-URI bytes


class CohereProvider(Provider):
    """Cohere: embed-v4.0 (1536-d; 256/512/1024), texts and images interleaved in ``inputs``."""

    name: ClassVar[str] = "cohere"
    title: ClassVar[str] = "Cohere"
    env_var: ClassVar[str] = "COHERE_API_KEY"
    fallback_env_vars: ClassVar[tuple[str, ...]] = ("CO_API_KEY",)
    option_names: ClassVar[tuple[str, ...]] = ("model", "truncation", "images_per_minute")
    default_base_url: ClassVar[str] = "https://api.cohere.com"
    official_hosts: ClassVar[tuple[str, ...]] = ("api.cohere.com",)
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.cohere:Cohere",)
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
    # One input holds texts and images in any order and gives one vector: interleaved natively.
    kinds: ClassVar[frozenset[str]] = frozenset({"text", "image", "interleaved"})
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = None  # Cohere counts inputs, not requests: see below

    def __init__(
        self,
        options: ProviderOptions,
        *,
        model: str | None = None,
        truncation: bool | None = None,
        images_per_minute: float | None = None,
    ) -> None:
        super().__init__(options)
        self.model = model or DEFAULT_MODEL
        self.truncation = True if truncation is None else bool(truncation)
        self.info = MODELS.get(self.model) or ModelInfo(self.model, None, image_side=1024, known=False)
        self.check_dimensions(self.info)
        if self.dimensions is None:
            self.dimensions = self.info.dimensions
        rate = IMAGES_PER_MINUTE if images_per_minute is None else images_per_minute
        if not rate > 0:
            raise ConfigurationError(f"cohere: images_per_minute must be positive, got {images_per_minute}")
        self.images = InputWindow(rate)
        self.inputs = InputWindow(INPUTS_PER_MINUTE)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", images_per_minute={self.images.quota})"

    def model_names(self) -> dict[str, str]:
        return {"model": self.model}

    def image_model(self) -> ModelInfo:
        return self.info

    def route(self, item: Item) -> str:
        return "inputs"

    def cap(self, route: str) -> int:
        return self.info.max_batch or INPUT_CAP

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if len(batch) >= self.cap(route):
            return False
        images = _images(item)
        if not images:
            return True
        # A request never carries more images than the image limit allows in one minute (5 on a trial key).
        return sum(_images(b) for b in batch) + images <= self.images.quota

    def prepare(self, item: Item) -> Ready:
        if isinstance(item, InterleavedItem):
            return Ready(kind="interleaved", parts=tuple(self.prepare(part) for part in item.parts))
        ready = super().prepare(item)
        image = ready.image
        if image is None or max(image.width, image.height) <= MAX_SIDE:
            return ready
        # Longer than 1568 px at the chosen shortest side (a panorama): shrink until it is not.
        side = max(1, math.floor(min(image.width, image.height) * MAX_SIDE / max(image.width, image.height)))
        return Ready(image=prepare_image(image.data, replace(self.image_spec(), min_side=side)))

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        contents = [_content(r) for r in batch]
        vectors: list[np.ndarray] = []
        for part in _packed(contents):
            vectors.extend(self._post(part, task))
        return vectors

    def _post(self, contents: list[Content], task: Task) -> list[np.ndarray]:
        images = sum(count for _, count, _ in contents)
        self.inputs.acquire(len(contents))
        if images:
            self.images.acquire(images)
        body: dict[str, Any] = {
            "model": self.model,
            "input_type": INPUT_TYPES[task],
            "embedding_types": ["float"],
            "inputs": [{"content": segments} for segments, _, _ in contents],
            "truncate": "END" if self.truncation else "NONE",
        }
        if self.options.dimensions is not None and self.info.known:
            body["output_dimension"] = self.options.dimensions
        return self.transport.post(
            f"{self.base_url}/v2/embed",
            self._parser(len(contents)),
            headers={"Authorization": f"Bearer {self._api_key}"},
            json=body,
        )

    def _parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            embeddings = body.get("embeddings") if isinstance(body, dict) else None
            vectors = embeddings.get("float") if isinstance(embeddings, dict) else None
            if not isinstance(vectors, list):
                raise InvalidResponseError(
                    "response has no 'embeddings.float' list", provider=self.name, body=response.text
                )
            return self.finish(vectors, expected)

        return parse

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        request_id = response.headers.get("x-request-id")
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code} {response.reason or ''}".strip(), request_id
        if not isinstance(body, dict):
            return f"HTTP {response.status_code}", request_id
        message = str(body.get("message") or f"HTTP {response.status_code}")
        if response.status_code == 429 and self.images.quota > 5:
            message += " (a trial key embeds 5 images a minute: if this is one, pass images_per_minute=5)"
        return message, request_id or (str(body["id"]) if body.get("id") else None)

    def is_auth_error(self, response: requests.Response) -> bool:
        """401/403, and Cohere's 498 (invalid token)."""
        return response.status_code in (401, 403, 498)


class InputWindow:
    """At most ``per_minute`` inputs in any 60 seconds, shared by every worker of one client (thread-safe)."""

    def __init__(self, per_minute: float, *, window: float = 60.0) -> None:
        self.quota = max(1, math.floor(per_minute * window / 60.0))
        self.window = window
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0
        self._lock = threading.Lock()

    def acquire(self, count: int) -> float:
        """Block until ``count`` more inputs fit in the window (at most the quota); returns seconds waited."""
        count = min(count, self.quota)
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._log and self._log[0][0] <= now - self.window:
                    self._used -= self._log.popleft()[1]
                if self._used + count <= self.quota:
                    self._log.append((now, count))
                    self._used += count
                    return waited
                free, delay = self.quota - self._used, 0.0
                for stamp, used in self._log:  # the time when enough old entries have left the window
                    free += used
                    delay = stamp + self.window - now
                    if free >= count:
                        break
            time.sleep(max(delay, 0.01))
            waited += max(delay, 0.01)


def _images(item: Item) -> int:
    if isinstance(item, InterleavedItem):
        return sum(isinstance(part, ImageItem) for part in item.parts)
    return int(isinstance(item, ImageItem))


def _content(ready: Ready) -> Content:
    """The ``content`` segments of one input, its number of images and their bytes as data URIs."""
    if ready.parts:
        contents = [_content(part) for part in ready.parts]
        segments = [segment for part, _, _ in contents for segment in part]
        return segments, sum(n for _, n, _ in contents), sum(size for _, _, size in contents)
    if ready.text is not None:
        return [{"type": "text", "text": ready.text}], 0, 0
    if ready.image is None:
        raise ValueError("cohere got an item with nothing to send")  # a bug, not user input
    uri = f"data:{ready.image.media_type};base64,{base64.b64encode(ready.image.data).decode('ascii')}"
    return [{"type": "image_url", "image_url": {"url": uri}}], 1, len(uri)


def _packed(contents: list[Content]) -> list[list[Content]]:
    """Consecutive requests of at most 20 MB of images each (usually one)."""
    parts: list[list[Content]] = [[]]
    total = 0
    for content in contents:
        size = content[2]
        if parts[-1] and total + size > IMAGE_BYTES_CAP:
            parts.append([])
            total = 0
        parts[-1].append(content)
        total += size
    return parts
