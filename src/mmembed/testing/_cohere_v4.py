"""Cohere embed-v4's inputs as the emulator checks and embeds them, for every endpoint that serves the model
(Cohere's own ``/v2/embed`` and Amazon Bedrock's ``cohere.embed-v4:0``).

``texts``, ``images`` (data URIs) or ``inputs`` (typed ``content`` segments: ``text``, ``image_url: {"url"}``), at
most 96 entries and 20 MB of image data URIs; each input is ONE vector (several segments: the normalised sum of
their fake vectors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .imagedata import ImageDataError, decode_base64, load_image
from .models import ModelSpec
from .space import get_space, truncate
from .wire import ApiError

__all__ = ["CLOUD_ID", "IMAGE_TYPES", "MAX_IMAGE_BYTES", "MAX_INPUTS", "SPACE", "items", "vector"]

CLOUD_ID = "cohere.embed-v4:0"  # the model's id on Amazon Bedrock
SPACE = "cohere-embed-v4"  # one model, one space, on every host
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
MAX_INPUTS = 96
MAX_IMAGE_BYTES = 20_000_000


def items(field: str, value: object, image_url_form: str = "object") -> list[list[tuple[str, Any]]]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, f"invalid request: {field} must be a non-empty list")
    if field != "images" and len(value) > MAX_INPUTS:
        raise ApiError(400, f"invalid request: {field} may hold at most {MAX_INPUTS} entries, got {len(value)}")
    if field == "texts":
        if not all(isinstance(t, str) for t in value):
            raise ApiError(400, "invalid request: texts must be strings")
        return [[("text", t)] for t in value]
    if field == "images":
        _check_bytes(value)
        return [[("image", _image(f"images[{n}]", uri))] for n, uri in enumerate(value)]
    items: list[list[tuple[str, Any]]] = []
    uris: list[object] = []
    for n, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != {"content"} or not isinstance(entry["content"], list):
            raise ApiError(400, f"invalid request: inputs[{n}] must be {{'content': [...]}}")
        if not entry["content"]:
            raise ApiError(400, f"invalid request: inputs[{n}].content must not be empty")
        parts: list[tuple[str, Any]] = []
        for k, segment in enumerate(entry["content"]):
            where = f"inputs[{n}].content[{k}]"
            kind = segment.get("type") if isinstance(segment, dict) else None
            if kind == "text" and set(segment) == {"type", "text"} and isinstance(segment["text"], str):
                parts.append(("text", segment["text"]))
                continue
            if kind != "image_url" or set(segment) != {"type", "image_url"}:
                raise ApiError(400, f"invalid request: {where} must be a text or an image_url segment")
            url = segment["image_url"]
            if image_url_form == "string":  # a host that takes the bare data URI (``image_url_form``)
                if not isinstance(url, str):
                    raise ApiError(400, f"invalid request: {where}.image_url must be a string 'data:...'")
                url = {"url": url}
            if not isinstance(url, dict) or set(url) - {"url", "detail"} or not isinstance(url.get("url"), str):
                raise ApiError(400, f"invalid request: {where}.image_url must be an object {{'url': 'data:...'}}")
            uris.append(url["url"])
            parts.append(("image", url["url"]))
        items.append(parts)
    _check_bytes(uris)
    return [[(k, _image("inputs", v) if k == "image" else v) for k, v in parts] for parts in items]


def _check_bytes(uris: list[object]) -> None:
    total = sum(len(u) for u in uris if isinstance(u, str))
    if total > MAX_IMAGE_BYTES:
        raise ApiError(400, f"invalid request: images total {total} bytes, over the {MAX_IMAGE_BYTES}-byte limit")


def _image(where: str, uri: object) -> Any:
    if not isinstance(uri, str) or not uri.startswith("data:"):
        raise ApiError(400, f"invalid request: {where}: images must be data URIs (data:image/...;base64,...)")
    media_type = uri[5:].partition(";")[0].lower()
    if media_type not in IMAGE_TYPES:
        raise ApiError(400, f"invalid request: {where}: image type {media_type!r} is not png, jpeg, webp or gif")
    try:
        return load_image(decode_base64(uri), frozenset({IMAGE_TYPES[media_type]}), where)
    except ImageDataError as exc:
        raise ApiError(400, f"invalid request: {exc}") from None


def vector(spec: ModelSpec, parts: list[tuple[str, Any]], query: bool, dimensions: int | None) -> np.ndarray:
    space = get_space(spec.space, spec.dim)
    vectors = [
        space.text(v, query=query, modality=spec.modality_weight)
        if k == "text"
        else space.image(v, modality=spec.modality_weight)
        for k, v in parts
    ]
    return np.asarray(truncate(np.sum(vectors, axis=0), dimensions or spec.dim))
