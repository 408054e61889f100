"""Cohere's embed-v4 request shape, served by Cohere's own ``/v2/embed`` and by Amazon Bedrock (``cohere.embed-v4:0``).

Every item is one ``inputs[]`` entry whose ``content`` holds typed segments: ``{"type": "text", "text": ...}``
or ``{"type": "image_url", "image_url": {"url": "data:image/...;base64,..."}}`` (an object with ``url``, as
Cohere's API takes; ``image_url_form="string"`` sends the bare data URI that one of Bedrock's doc pages shows).
Each input comes back as ONE vector, so a mixed stream needs no second route, and texts-only batches use
``inputs`` too (one request shape, pinned in tests). ``embedding_types: ["float"]`` is always sent; queries go
out with ``input_type: "search_query"``, documents with ``"search_document"``.

At most 96 inputs and 20 MB of image data URIs per request (the data URIs are packed here exactly); images over
1568x1568 pixels are downsampled by the server, so none is uploaded larger. A host may cap the images of one
request (:meth:`~mmembed.providers.base.Provider.request_cap` ``("images")``: Cohere's per-minute image limit).

What differs between hosts is declared in ``Hosting(..., wire={...})``: ``path`` (the native ``/v2/embed``),
``model_field`` (the body names the model; a host that routes by model in the URL says False) and
``truncate`` (whether the ``truncate`` field is sent: its values differ between Bedrock's doc pages, so
Bedrock omits it).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, TypedDict

import numpy as np
import requests

from ..errors import ConfigurationError, InvalidResponseError
from ..images import prepare_image
from ..inputs import ImageItem, InterleavedItem, Item
from ..options import Doc
from ._family import ModelFamily
from ._types import ModelInfo, Ready, Task, json_body

__all__ = ["CohereV4", "CohereV4Settings"]

_V4 = {"image_side": 1024, "dimension_choices": (256, 512, 1024, 1536), "max_batch": 96}
INPUT_CAP = 96
MAX_SIDE = 1568
IMAGE_BYTES_CAP = 20_000_000  # of data URIs per request
INPUT_TYPES: dict[str, str] = {"document": "search_document", "query": "search_query"}
Content = tuple[list[dict[str, Any]], int, int]  # one input's segments, its images, their data-URI bytes


IMAGE_URL_FORMS = ("object", "string")


class CohereV4Settings(TypedDict, total=False):
    """The embed-v4 family's own options."""

    truncation: Annotated[
        bool | None,
        Doc("Cut over-long texts at the end instead of failing (sent as truncate END/NONE where the host takes it).",
            default=True, local=True),
    ]
    image_url_form: Annotated[
        str | None,
        Doc("How an image goes in an input: 'object' ({\"url\": data URI}, what Cohere's API and one Bedrock doc page "
            "show) or 'string' (a bare data URI, what another Bedrock page shows). UNCONFIRMED which Bedrock "
            "takes: switch if Bedrock answers a ValidationException about image_url.", default="object"),
    ]


class CohereV4(ModelFamily):
    """embed-v4: texts and images interleaved in ``inputs``, one vector per input (1536-d; 256/512/1024)."""

    # Shortest side 1024 (a 4:3 page at 1365x1024 keeps small print legible), longest at most 1568: the most
    # embed-v4 sees. The native id and Bedrock's.
    models: ClassVar[dict[str, ModelInfo]] = {
        "embed-v4.0": ModelInfo("embed-v4.0", 1536, **_V4),  # type: ignore[arg-type]
        "cohere.embed-v4:0": ModelInfo("cohere.embed-v4:0", 1536, **_V4),  # type: ignore[arg-type]
    }
    native_ids: ClassVar[tuple[str, ...]] = ("embed-v4.0",)
    cloud_ids: ClassVar[tuple[str, ...]] = ("cohere.embed-v4:0",)  # Amazon Bedrock's
    settings: ClassVar[type | None] = CohereV4Settings
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
    # One input holds texts and images in any order and gives one vector: interleaved natively.
    kinds: ClassVar[frozenset[str]] = frozenset({"text", "image", "interleaved"})
    unknown_image_side: ClassVar[int] = 1024
    truncation: bool
    image_url_form: str

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        if self.image_url_form not in IMAGE_URL_FORMS:
            raise ConfigurationError(
                f"{self.name}: image_url_form must be one of {', '.join(IMAGE_URL_FORMS)}, not {self.image_url_form!r}"
            )

    def route(self, item: Item) -> str:
        return "inputs"

    def cap(self, route: str) -> int:
        return self.info.max_batch or INPUT_CAP

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if len(batch) >= self.cap(route):
            return False
        images = _images(item)
        quota = self.provider.request_cap("images")
        if not images or quota is None:
            return True
        # A request never carries more images than the host's image limit allows (5 a minute on a trial key).
        return sum(_images(b) for b in batch) + images <= quota

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
        contents = [_content(r, self.image_url_form) for r in batch]
        vectors: list[np.ndarray] = []
        for part in _packed(contents):
            vectors.extend(self._post(part, task))
        return vectors

    def _post(self, contents: list[Content], task: Task) -> list[np.ndarray]:
        body: dict[str, Any] = {}
        if self.wire.get("model_field", True):
            body["model"] = self.model
        body["input_type"] = INPUT_TYPES[task]
        body["embedding_types"] = ["float"]
        body["inputs"] = [{"content": segments} for segments, _, _ in contents]
        if self.wire.get("truncate", True):
            body["truncate"] = "END" if self.truncation else "NONE"
        if self.provider.options.dimensions is not None and self.info.known:
            body["output_dimension"] = self.provider.options.dimensions
        path = self.provider.model_path(self.model, self.wire.get("path", "/v2/embed"))
        return self.provider.post(path, self._parser(len(contents)), json=body)

    def _parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            embeddings = body.get("embeddings") if isinstance(body, dict) else None
            # embeddings_by_type ({"float": [...]}), or the bare list of an answer without embedding_types.
            vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
            if not isinstance(vectors, list):
                raise InvalidResponseError(
                    "response has no 'embeddings.float' list", provider=self.name, body=response.text
                )
            return self.finish(vectors, expected)

        return parse


def _images(item: Item) -> int:
    if isinstance(item, InterleavedItem):
        return sum(isinstance(part, ImageItem) for part in item.parts)
    return int(isinstance(item, ImageItem))


def _content(ready: Ready, image_url_form: str) -> Content:
    """The ``content`` segments of one input, its number of images and their bytes as data URIs."""
    if ready.parts:
        contents = [_content(part, image_url_form) for part in ready.parts]
        segments = [segment for part, _, _ in contents for segment in part]
        return segments, sum(n for _, n, _ in contents), sum(size for _, _, size in contents)
    if ready.text is not None:
        return [{"type": "text", "text": ready.text}], 0, 0
    if ready.image is None:
        raise ValueError("embed-v4 got an item with nothing to send")  # a bug, not user input
    uri = f"data:{ready.image.media_type};base64,{base64.b64encode(ready.image.data).decode('ascii')}"
    image_url: str | dict[str, str] = uri if image_url_form == "string" else {"url": uri}
    return [{"type": "image_url", "image_url": image_url}], 1, len(uri)


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
