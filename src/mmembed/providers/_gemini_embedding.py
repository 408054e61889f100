"""gemini-embedding-2, written once for every host that serves it: one ``Content`` per item, one vector each.

Every host takes the same ``Content`` (``{"parts": [{"text": …} | {"inlineData": …} | {"fileData": …}]}``,
lowerCamelCase as proto3 JSON prints it); all parts of one content make **one** vector, which is why Google's
SDKs, which join consecutive strings into one content for this model, return one vector for many texts. Tasks
are prompt prefixes on texts (``task: search result | query: …`` / ``title: none | text: …``), not ``taskType``,
which only the text-only ``gemini-embedding-001`` takes. Images go inline as PNG or JPEG (or ``gs://`` where
the host reads Cloud Storage); ``http(s)`` URLs are downloaded here, under the download policy.

How a host calls it is declared with its :class:`~mmembed.providers.base.Hosting` ``wire``:

* ``batch=True``: ``models/{m}:batchEmbedContents``, one ``EmbedContentRequest`` per item (each naming
  ``"model": "models/{m}"``), at most 100 per call, options beside each content;
* ``batch=False``: ``models/{m}:embedContent``, one content per call (the pipeline keeps several in flight),
  options in the object named by ``config`` (e.g. ``embedContentConfig``), answers that may say ``truncated``
  and count tokens by modality (:attr:`GeminiEmbedding.usage`).

The host maps ``/models/{m}:{method}`` to its own URL layout (:meth:`Provider.url`).
"""

from __future__ import annotations

import base64
import mimetypes
import threading
import warnings
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, TypedDict

import numpy as np
import requests

from ..errors import ConfigurationError, InputError, InvalidResponseError, TextTooLongWarning
from ..inputs import ImageItem, InterleavedItem, Item, MediaItem, TextItem
from ..options import Doc
from .base import ALL_KINDS, ModelFamily, ModelInfo, Ready, Task, json_body

__all__ = [
    "DOCUMENT_TEMPLATE",
    "MEDIA_TYPES",
    "QUERY_TEMPLATE",
    "TASK_TYPES",
    "GeminiEmbedding",
    "PromptTemplates",
    "check_media_type",
    "check_template",
    "content",
    "inline_size",
    "one_content",
    "part",
]

# gemini-embedding-2 takes its task as a prompt prefix, not ``taskType`` (Google's cookbook); the strings are the
# search/RAG pair the cookbook, LlamaIndex and others use. Only texts get them: how a prefix should apply to an
# image is not documented, so media go bare. Both are settings (``query_template=``, ``document_template=``).
QUERY_TEMPLATE = "task: search result | query: {text}"
DOCUMENT_TEMPLATE = "title: none | text: {text}"
# gemini-embedding-001 (text only) documents ``taskType`` instead.
TASK_TYPES: dict[Task, str] = {"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"}


def check_template(name: str, template: str) -> str:
    """A prompt template with exactly one ``{text}`` placeholder (checked now, not at the first request)."""
    if not isinstance(template, str) or template.count("{text}") != 1:
        raise ConfigurationError(f"{name} must contain '{{text}}' exactly once, got {template!r}")
    return template


def content(ready: Ready, template: str | None) -> dict[str, Any]:
    """One item's ``Content``: one part, or one per part of an interleaved item (all of them make ONE vector).

    A text goes through ``template`` (None: as is); media go bare: images, PDFs, video and audio as
    ``inlineData`` (base64) or, for ``gs://``, ``fileData``.
    """
    return {"parts": [part(p, template) for p in (ready.parts or (ready,))]}


def part(ready: Ready, template: str | None) -> dict[str, Any]:
    """The ``Part`` of one leaf item."""
    if ready.text is not None:
        text = ready.text if template is None else template.replace("{text}", ready.text)
        return {"text": text}
    if ready.image is not None:
        data = base64.b64encode(ready.image.data).decode("ascii")
        return {"inlineData": {"mimeType": ready.image.media_type, "data": data}}
    if ready.media is not None and ready.media_type is not None:
        return {"inlineData": {"mimeType": ready.media_type, "data": base64.b64encode(ready.media).decode("ascii")}}
    if ready.gcs_uri is not None:
        media_type = ready.media_type if ready.kind != "image" and ready.media_type else gcs_media_type(ready.gcs_uri)
        return {"fileData": {"mimeType": media_type, "fileUri": ready.gcs_uri}}
    raise ValueError("a Content part with nothing to send")  # a bug, not user input


#: The media types gemini-embedding-2 documents for PDF, video and audio parts (images: PNG and JPEG).
MEDIA_TYPES = frozenset({"application/pdf", "video/mp4", "video/quicktime", "video/mpeg", "audio/mpeg", "audio/wav"})


def check_media_type(item: Item) -> None:
    """Refuse a PDF/video/audio item in a format gemini-embedding-2 does not document (WebM, Ogg, FLAC, ...)."""
    if isinstance(item, MediaItem) and item.media_type not in MEDIA_TYPES:
        raise InputError(
            f"gemini-embedding-2 takes MP4/MOV video, MP3/WAV audio and PDF, not {item.media_type}; convert it first"
        )
    if isinstance(item, ImageItem) and item.gcs_uri is not None:
        gcs_media_type(item.gcs_uri)  # refused here, while preparing, so the error names the item
    if isinstance(item, InterleavedItem):
        for p in item.parts:
            check_media_type(p)


def one_content(item: InterleavedItem) -> bool:
    """Whether the parts fit one gemini-embedding-2 content: at most 6 images and one PDF, video, audio each."""
    kinds = [part.kind for part in item.parts]
    return kinds.count("image") <= 6 and all(kinds.count(k) <= 1 for k in ("pdf", "video", "audio"))


def inline_size(item: Item) -> int:
    """A rough count of the bytes ``item`` puts inline in a request (paths by their size on disk)."""
    if isinstance(item, InterleavedItem):
        return sum(inline_size(p) for p in item.parts)
    if isinstance(item, MediaItem):
        if isinstance(item.raw, bytes):
            return len(item.raw)
        if item.raw is not None:
            try:
                return item.raw.stat().st_size
            except OSError:
                return 0
        return 0
    return 300_000 if item.kind == "image" else 0  # a photo shrunk to 768-2048 px


def gcs_media_type(uri: str) -> str:
    """The image type of a ``gs://`` object, from its name (the API wants it; only PNG and JPEG are taken)."""
    kind, _ = mimetypes.guess_type(uri.split("?", 1)[0])
    if kind not in ("image/png", "image/jpeg"):
        raise InputError(f"gs:// images must be .png or .jpg/.jpeg objects for this model, not {uri!r}")
    return kind


class PromptTemplates(TypedDict, total=False):
    """The prompts texts are wrapped in (the family's tasks), on every host."""

    query_template: Annotated[
        str | None,
        Doc(f"The prompt a query text is wrapped in, {{text}} once (Gemini models; default {QUERY_TEMPLATE!r}; "
            "images go bare)."),
    ]
    document_template: Annotated[
        str | None, Doc(f"The prompt a document text is wrapped in (Gemini models; default {DOCUMENT_TEMPLATE!r}).")
    ]


# Images: shortest side 768 (the tile Gemini's vision encoder works in), longest at most 2048 (see the README).
MODELS = {
    **{
        name: ModelInfo(name, 3072, image_side=768, max_side=2048, api_dimensions=(128, 3072), max_batch=100,
                        kinds=ALL_KINDS)
        for name in ("gemini-embedding-2", "gemini-embedding-2-preview")
    },
    "gemini-embedding-001": ModelInfo("gemini-embedding-001", 3072, image_side=768, max_side=2048,
                                      api_dimensions=(128, 3072), max_batch=100, kinds=frozenset({"text"})),
}
MULTIMODAL = frozenset({"gemini-embedding-2", "gemini-embedding-2-preview"})
TASK_TYPE_MODELS = frozenset({"gemini-embedding-001", "text-embedding-004", "embedding-001"})
MAX_REQUESTS = 100  # per batchEmbedContents call (the 101st is a 400)
# Inline images make big bodies (base64): past this many per call, another request (and concurrency) wins.
# 16 photos at 2048x768 stay well under the ~20 MB of inline data one call should carry.
IMAGES_PER_REQUEST = 16
# ... and past this many bytes of inline PDFs, video and audio (a batch should stay under ~20 MB of inline data).
INLINE_BYTES_PER_REQUEST = 12 * 1024 * 1024


class GeminiEmbedding(ModelFamily):
    """gemini-embedding-2 (text, images, PDF, video, audio and interleaved parts in one space) on any host."""

    models: ClassVar[dict[str, ModelInfo]] = MODELS
    settings: ClassVar[type | None] = PromptTemplates
    kinds: ClassVar[frozenset[str]] = ALL_KINDS  # unknown models: assumed multimodal, as gemini-embedding-2
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    unknown_image_side: ClassVar[int] = 768
    query_template: str
    document_template: str

    @classmethod
    def serves(cls, model: str) -> bool:
        # As Google's SDKs decide: Gemini embedding models but the text-only 001 (and partner "maas" models).
        return "gemini" in model and model != "gemini-embedding-001" and "maas" not in model

    @classmethod
    def unknown(cls, model: str) -> ModelInfo:
        return ModelInfo(model, None, image_side=cls.unknown_image_side, max_side=2048, known=False)

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        self.query_template = check_template("query_template", self.query_template or QUERY_TEMPLATE)
        self.document_template = check_template("document_template", self.document_template or DOCUMENT_TEMPLATE)
        self.uses_task_type = self.model in TASK_TYPE_MODELS
        self.multimodal = self.model in MULTIMODAL or not (self.info.known or self.uses_task_type)
        self.batch = bool(self.wire.get("batch"))
        self.usage: dict[str, int] = {}  # prompt tokens by modality, summed over answered calls (single calls)
        self._usage_lock = threading.Lock()
        self._warned_truncated = False

    @property
    def method(self) -> str:
        return "batchEmbedContents" if self.batch else "embedContent"

    def route(self, item: Item) -> str:
        return "content"

    def cap(self, route: str) -> int:
        return min(self.info.max_batch or MAX_REQUESTS, MAX_REQUESTS) if self.batch else 1

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if len(batch) >= self.cap(route):
            return False
        if isinstance(item, ImageItem):
            return sum(isinstance(b, ImageItem) for b in batch) < IMAGES_PER_REQUEST
        size = inline_size(item)
        return not size or sum(inline_size(b) for b in batch) + size <= INLINE_BYTES_PER_REQUEST

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        return super().takes_interleaved(item) and one_content(item)

    def task_key(self, item: Item, task: Task) -> str:
        # Media go bare whatever the task, so a query image and a document image share a cache entry.
        if not isinstance(item, TextItem):
            return "media"
        return task if self.uses_task_type else f"{task}:{self._template(task)}"

    def prepare(self, item: Item) -> Ready:
        if not self.multimodal and not isinstance(item, TextItem):
            models = " or ".join(sorted(MULTIMODAL))
            raise InputError(f"{self.name}: {self.model} embeds text only; use model={models} for images")
        check_media_type(item)
        return super().prepare(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        path = f"/models/{self.model}:{self.method}"
        if self.batch:
            body: dict[str, Any] = {"requests": [self._request(ready, task) for ready in batch]}
            return self.provider.post(path, self._batch_parser(len(batch)), json=body)
        (ready,) = batch
        body = {"content": content(ready, self._template(task))}
        if self.dimensions is not None:
            body[self.wire.get("config", "embedContentConfig")] = {"outputDimensionality": self.dimensions}
        return self.provider.post(path, self._single_parser, json=body)

    def _template(self, task: Task) -> str | None:
        if self.uses_task_type:
            return None
        return self.query_template if task == "query" else self.document_template

    def _request(self, ready: Ready, task: Task) -> dict[str, Any]:
        request: dict[str, Any] = {"model": f"models/{self.model}", "content": content(ready, self._template(task))}
        if self.uses_task_type:
            request["taskType"] = TASK_TYPES[task]
        if self.dimensions is not None:
            request["outputDimensionality"] = self.dimensions
        return request

    def _batch_parser(self, expected: int) -> Any:
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

    def _single_parser(self, response: requests.Response) -> list[np.ndarray]:
        body = json_body(response, self.name)
        embedding = body.get("embedding") if isinstance(body, dict) else None
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise InvalidResponseError("response has no 'embedding.values'", provider=self.name, body=response.text)
        if body.get("truncated") is True:
            self._warn_truncated()
        vectors = self.finish([values], 1)
        self._count_usage(body.get("usageMetadata"))
        return vectors

    def _count_usage(self, usage: object) -> None:
        details = usage.get("promptTokensDetails") if isinstance(usage, dict) else None
        if not isinstance(details, list):
            return
        with self._usage_lock:
            for detail in details:
                if isinstance(detail, dict) and isinstance(detail.get("tokenCount"), int):
                    modality = str(detail.get("modality", "UNKNOWN"))
                    self.usage[modality] = self.usage.get(modality, 0) + detail["tokenCount"]

    def _warn_truncated(self) -> None:
        if self._warned_truncated:
            return
        self._warned_truncated = True
        warnings.warn(
            f"{self.name}: {self.model} truncated an input that was over its token limit (warned once)",
            TextTooLongWarning,
            stacklevel=2,
        )
