"""Marengo's request checks and fake vectors, shared by the emulated Bedrock runtime and Twelve Labs API.

The same logical request arrives in camelCase (Bedrock: ``inputText``, ``mediaSource``, ``base64String``) or
snake_case (Twelve Labs: ``input_text``, ``media_source``, ``base64_string``); a media source holds exactly one
source; images are JPEG/PNG of at most 5 MB (and, natively, at least 128 px a side); ``text_image`` fuses its
text and image into one vector (their normalised mean here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .imagedata import ImageDataError, decode_base64, load_image
from .models import ModelSpec
from .space import get_space, truncate
from .wire import ApiError

__all__ = ["CLOUD_27", "CLOUD_30", "TEXT_IMAGE", "marengo_vector", "media_bytes"]

CLOUD_30, CLOUD_27 = "twelvelabs.marengo-embed-3-0-v1:0", "twelvelabs.marengo-embed-2-7-v1:0"  # Bedrock's ids
TEXT_IMAGE = frozenset({"text", "image"})
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_TEXT_TOKENS = 500


def _key(name: str, camel: bool) -> str:
    if not camel:
        return name
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def media_bytes(content: dict[str, Any], camel: bool, where: str, *, field: str = "media_source") -> bytes:
    """The bytes of a ``media_source`` holding exactly one source (only base64 is readable offline)."""
    source = content.get(_key(field, camel))
    sources = ("base64_string", "url", "asset_id", "s3_location")
    if not isinstance(source, dict) or len([k for k in source if k in {_key(s, camel) for s in sources}]) != 1:
        raise ApiError(400, f"{where}: {_key(field, camel)} must hold exactly one source", code="parameter_invalid")
    extra = set(source) - {_key(s, camel) for s in sources}
    if extra:
        raise ApiError(400, f"{where}: unknown parameter {sorted(extra)[0]}", code="parameter_unknown")
    payload = source.get(_key("base64_string", camel))
    if payload is None:
        raise ApiError(400, f"{where}: the emulator reads base64 sources only", code="parameter_invalid")
    try:
        return decode_base64(str(payload))
    except ImageDataError as exc:
        raise ApiError(400, f"{where}: {exc}", code="parameter_invalid") from None


def marengo_vector(spec: ModelSpec, kind: str, content: dict[str, Any], *, camel: bool,
                   min_side: int = 0) -> np.ndarray:
    """The vector of one text, image or text_image input (checked as the API checks it)."""
    space = get_space(spec.space, spec.dim)
    allowed = {"text": {"input_text", "text_truncate"}, "image": {"media_source"},
               "text_image": {"input_text", "media_source"}}[kind]
    extra = set(content) - {_key(k, camel) for k in allowed}
    if extra:
        raise ApiError(400, f"{kind}: unknown parameter {sorted(extra)[0]}", code="parameter_unknown")
    parts = []
    if kind in ("text", "text_image"):
        text = content.get(_key("input_text", camel))
        if not isinstance(text, str) or not text or len(text.split()) > MAX_TEXT_TOKENS:
            raise ApiError(400, f"{kind}: input_text must be a non-empty text of at most 500 tokens",
                           code="parameter_invalid")
        parts.append(np.asarray(space.text(text, modality=spec.modality_weight)))
    if kind in ("image", "text_image"):
        data = media_bytes(content, camel, kind)
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(400, f"{kind}: the image is {len(data)} bytes, over 5 MB", code="parameter_invalid")
        try:
            picture = load_image(data, frozenset({"JPEG", "PNG"}), kind)
        except ImageDataError as exc:
            raise ApiError(400, f"{kind}: {exc}", code="parameter_invalid") from None
        if min(picture.size) < min_side:
            raise ApiError(400, f"{kind}: images must be at least {min_side}x{min_side} pixels",
                           code="parameter_invalid")
        parts.append(np.asarray(space.image(picture, modality=spec.modality_weight)))
    return np.asarray(truncate(np.mean(parts, axis=0), spec.dim))
