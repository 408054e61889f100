"""Google wire bits shared by the Gemini API and Vertex providers: Content parts, prompt prefixes, errors.

Both backends take the same ``Content`` (``{"parts": [{"text": …} | {"inlineData": …} | {"fileData": …}]}``,
lowerCamelCase as proto3 JSON prints it) and answer errors as a ``google.rpc.Status``:
``{"error": {"code", "message", "status", "details": [...]}}``. A bad API key is a 400 whose details hold
``ErrorInfo.reason == "API_KEY_INVALID"``; a 429 ``RESOURCE_EXHAUSTED`` says when to come back in
``RetryInfo.retryDelay`` (a protobuf Duration such as ``"47s"`` or ``"1.5s"``) rather than in ``Retry-After``.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from typing import Any

import requests

from ..errors import ConfigurationError, InputError
from ..inputs import ImageItem, InterleavedItem, Item, MediaItem
from ..transport import parse_retry_after
from .base import Ready, Task

__all__ = [
    "DOCUMENT_TEMPLATE",
    "MEDIA_TYPES",
    "QUERY_TEMPLATE",
    "TASK_TYPES",
    "check_media_type",
    "check_template",
    "content",
    "describe_error",
    "inline_size",
    "is_auth_error",
    "is_embed_content_model",
    "one_content",
    "part",
    "retry_delay",
]

# gemini-embedding-2 takes its task as a prompt prefix, not ``taskType`` (Google's cookbook); the strings are the
# search/RAG pair the cookbook, LlamaIndex and others use. Only texts get them: how a prefix should apply to an
# image is not documented, so media go bare. Both are settings (``query_template=``, ``document_template=``).
QUERY_TEMPLATE = "task: search result | query: {text}"
DOCUMENT_TEMPLATE = "title: none | text: {text}"
# gemini-embedding-001 (text only) documents ``taskType`` instead.
TASK_TYPES: dict[Task, str] = {"query": "RETRIEVAL_QUERY", "document": "RETRIEVAL_DOCUMENT"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


def is_embed_content_model(model: str) -> bool:
    """Whether Vertex serves ``model`` through ``:embedContent`` (as Google's SDKs decide), not ``:predict``."""
    return "gemini" in model and model != "gemini-embedding-001" and "maas" not in model


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
    raise ValueError("a Google provider got an item with nothing to send")  # a bug, not user input


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


def _error(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _details(response: requests.Response) -> list[dict[str, Any]]:
    details = _error(response).get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def describe_error(response: requests.Response) -> tuple[str, str | None]:
    """``STATUS: message`` from a ``google.rpc.Status`` body, and the request id if a header has one."""
    request_id = response.headers.get("x-request-id")
    error = _error(response)
    if not error:
        return f"HTTP {response.status_code} {response.reason or ''}".strip(), request_id
    return f"{error.get('status', 'ERROR')}: {error.get('message', '')}".strip(), request_id


def is_auth_error(response: requests.Response) -> bool:
    """401/403, and Google's answer to a bad API key: 400 INVALID_ARGUMENT with reason API_KEY_INVALID."""
    if response.status_code in (401, 403):
        return True
    return response.status_code == 400 and any(d.get("reason") == "API_KEY_INVALID" for d in _details(response))


def retry_delay(response: requests.Response) -> float | None:
    """Seconds to wait: ``google.rpc.RetryInfo.retryDelay`` when the body has one, else ``Retry-After``."""
    for detail in _details(response):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            match = _DURATION.match(delay) if isinstance(delay, str) else None
            if match:
                return float(match.group(1))
    return parse_retry_after(response.headers.get("Retry-After"))
