"""The emulated Voyage endpoint: ``POST /v1/multimodalembeddings`` (one vector per input of typed segments).

Strict, as the held-out stub of PROVIDERS-NEXT is: unknown top-level keys and extra keys in a segment are
refused; ``input_type`` must be ``query``, ``document`` or null; ``image_base64`` must be a data URL of a PNG,
JPEG, WebP or GIF; ``image_url`` and ``image_base64`` may not be mixed in one request; at most 1,000 inputs
and 320,000 tokens per request (a text's tokens are counted as ``ceil(chars / 5)`` — a little under the
client's estimate of one per 4 — an image's as its pixels / 560, clamped to 50,000 - 2,000,000 pixels), at
most 32,000 per input unless ``truncation`` is true. An input of several segments gets the normalised mean of
its segments' fake vectors. Errors are ``{"detail": ...}`` with a ``request-id`` header.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .imagedata import ImageDataError, decode_base64, fetch_url, load_image
from .models import ModelSpec, find_model
from .space import get_space, to_wire, truncate
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["Voyage"]

KEYS = frozenset({"inputs", "model", "input_type", "truncation", "output_dtype", "output_dimension"})
SEGMENT_TYPES = ("text", "image_url", "image_base64", "video_url", "video_base64")
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
MAX_INPUTS = 1000
MAX_TOKENS = 320_000
MAX_INPUT_TOKENS = 32_000
MAX_IMAGE_PIXELS = 16_000_000
MAX_IMAGE_BYTES = 20_000_000
MIN_PIXELS, MAX_PIXELS, PIXELS_PER_TOKEN = 50_000, 2_000_000, 560
_BOTH, _TASKS = frozenset({"text", "image"}), frozenset({"query", "document"})  # input_type
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("voyage", "voyage-multimodal-3.5", "voyage-multimodal-3.5", 2048, _BOTH, _TASKS,
              frozenset({"query"}), dimensions=(256, 512, 1024, 2048), max_inputs=1000, modality_weight=1.0,
              default_dim=1024),
    ModelSpec("voyage", "voyage-multimodal-3", "voyage-multimodal-3", 1024, _BOTH, _TASKS,
              frozenset({"query"}), dimensions=(1024,), max_inputs=1000, modality_weight=1.0),
)
VIDEO_TOKENS = 2_000  # what the emulator bills a video (Voyage's video pricing is UNCONFIRMED)


class Voyage(Endpoint):
    """``{inputs: [{content: [...]}], model, input_type?, truncation?, output_dimension?}`` → ``{data, usage}``."""

    provider: ClassVar[str] = "voyage"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def matches(self, path: str) -> bool:
        return path == "/v1/multimodalembeddings"

    def error(self, err: ApiError, request_id: str) -> Reply:
        reply = Reply.json(err.status, {"detail": err.message})
        return Reply(reply.status, reply.body, reply.content_type, (("request-id", request_id),), reply.payload)

    def drop_one(self, payload: Any) -> Any:
        return {**payload, "data": payload["data"][:-1]}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        token = bearer(req.headers)
        if not token or not settings.accepts(token):
            raise ApiError(401, "Provided API key is invalid.")
        if req.body_error is not None:
            raise ApiError(400, req.body_error)
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(422, "the request body must be a JSON object")
        unknown = sorted(set(body) - KEYS)
        if unknown:
            raise ApiError(422, f"unexpected fields {unknown}")
        model = body.get("model")
        spec = find_model("voyage", model) if isinstance(model, str) else None
        if spec is None:
            raise ApiError(400, f"Model {body.get('model')!r} is not supported.")
        input_type = body.get("input_type")
        if input_type not in (None, "query", "document"):
            raise ApiError(400, f"input_type {input_type!r} is invalid; use 'query', 'document' or null")
        truncation = body.get("truncation", True)
        if not isinstance(truncation, bool):
            raise ApiError(422, "'truncation' must be a boolean")
        if body.get("output_dtype") not in (None, "float"):
            raise ApiError(400, "the emulator answers output_dtype 'float' only")
        dimensions = body.get("output_dimension")
        if dimensions is not None and (
            isinstance(dimensions, bool) or spec.dimensions is None or dimensions not in spec.dimensions
        ):
            allowed = list(spec.dimensions or (spec.dim,))
            raise ApiError(400, f"output_dimension for {spec.name} must be one of {allowed}")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise ApiError(422, "'inputs' must be a non-empty list of {content: [...]} objects")
        if len(inputs) > MAX_INPUTS:
            raise ApiError(400, f"The batch size limit is {MAX_INPUTS}; your batch has {len(inputs)} inputs.")
        kinds = {s.get("type") for i in inputs if isinstance(i, dict) for s in _segments(i) if isinstance(s, dict)}
        if {"image_url", "image_base64"} <= kinds:
            raise ApiError(400, "image_url and image_base64 cannot be mixed in one request")
        parsed = [self._input(spec, n, entry, truncation) for n, entry in enumerate(inputs)]
        total = sum(tokens for _, tokens, _ in parsed)
        if total > MAX_TOKENS:
            raise ApiError(400, f"Request to model {spec.name} has {total} tokens, over the limit of {MAX_TOKENS}.")
        query = input_type == "query"
        data = []
        for n, (parts, _, _) in enumerate(parsed):
            vector = _vector(spec, parts, query, dimensions)
            data.append({"object": "embedding", "embedding": vector, "index": n})
        text_tokens = sum(t for _, t, px in parsed if px == 0)
        pixels = sum(px for _, _, px in parsed)
        usage = {"text_tokens": text_tokens, "image_pixels": pixels, "video_pixels": 0, "total_tokens": total}
        return Reply.json(200, {"object": "list", "data": data, "model": spec.name, "usage": usage})

    @staticmethod
    def _input(spec: ModelSpec, n: int, entry: object, truncation: bool) -> tuple[list[tuple[str, Any]], int, int]:
        """One input: its parts (("text", str) / ("image", PIL)), its tokens and its image pixels."""
        if not isinstance(entry, dict) or set(entry) != {"content"}:
            raise ApiError(422, f"inputs[{n}] must be an object with exactly one field, 'content'")
        content = entry["content"]
        if not isinstance(content, list) or not content:
            raise ApiError(422, f"inputs[{n}].content must be a non-empty list of segments")
        parts: list[tuple[str, Any]] = []
        tokens = pixels = 0
        for k, segment in enumerate(content):
            where = f"inputs[{n}].content[{k}]"
            kind = segment.get("type") if isinstance(segment, dict) else None
            if kind not in SEGMENT_TYPES:
                raise ApiError(422, f"{where}.type must be one of {list(SEGMENT_TYPES)}")
            if set(segment) != {"type", kind} or not isinstance(segment[kind], str):
                raise ApiError(422, f"{where} must have exactly 'type' and a string {kind!r} (extra fields forbidden)")
            value = segment[kind]
            if kind == "text":
                parts.append(("text", value))
                tokens += math.ceil(len(value) / 5)
                continue
            if kind.startswith("video"):
                if spec.name != "voyage-multimodal-3.5":
                    raise ApiError(400, f"{where}: {spec.name} does not take video (voyage-multimodal-3.5 does)")
                parts.append(("image", _video(where, kind, value)))
                tokens += VIDEO_TOKENS
                continue
            image = _image(where, kind, value)
            parts.append(("image", image))
            seen = min(max(image.width * image.height, MIN_PIXELS), MAX_PIXELS)
            pixels += seen
            tokens += math.ceil(seen / PIXELS_PER_TOKEN)
        if tokens > MAX_INPUT_TOKENS and not truncation:
            raise ApiError(400, f"inputs[{n}] has {tokens} tokens, over {MAX_INPUT_TOKENS}, and truncation is false")
        return parts, min(tokens, MAX_INPUT_TOKENS), pixels


def _segments(entry: dict[str, Any]) -> list[Any]:
    content = entry.get("content")
    return content if isinstance(content, list) else []


def _image(where: str, kind: str, value: str) -> Any:
    try:
        if kind == "image_url":
            if not value.startswith(("http://", "https://")):
                raise ApiError(400, f"{where}.image_url must be an http(s) URL")
            data = fetch_url(value)
            formats = frozenset(IMAGE_TYPES.values())
        else:
            media_type = value[5:].partition(";")[0].lower() if value.startswith("data:") else ""
            if media_type not in IMAGE_TYPES or ";base64," not in value[:64]:
                raise ApiError(400, f"{where}.image_base64 must be a data URL (data:image/png;base64,…)")
            data = decode_base64(value)
            formats = frozenset({IMAGE_TYPES[media_type]})
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(400, f"{where}: image is over {MAX_IMAGE_BYTES} bytes")
        image = load_image(data, formats, where)
    except ImageDataError as exc:
        raise ApiError(400, str(exc)) from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise ApiError(400, f"{where}: image is over {MAX_IMAGE_PIXELS} pixels")
    return image


def _video(where: str, kind: str, value: str) -> Any:
    """A video segment as the picture of its mean colour (what the fake space can see of it)."""
    from PIL import Image

    from .media import MediaError, video_colour

    try:
        if kind == "video_url":
            data = fetch_url(value)
        else:
            media_type = value[5:].partition(";")[0].lower() if value.startswith("data:") else ""
            if not media_type.startswith("video/") or ";base64," not in value[:64]:
                raise ApiError(400, f"{where}.video_base64 must be a data URL (data:video/mp4;base64,…)")
            data = decode_base64(value)
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(400, f"{where}: video is over {MAX_IMAGE_BYTES} bytes")
        return Image.new("RGB", (32, 32), video_colour(data))
    except (ImageDataError, MediaError) as exc:
        raise ApiError(400, f"{where}: {exc}") from None


def _vector(spec: ModelSpec, parts: list[tuple[str, Any]], query: bool, dimensions: int | None) -> list[float]:
    """The normalised mean of the parts' fake vectors (one part: its vector)."""
    space = get_space(spec.space, spec.dim)
    vectors = [
        space.text(value, query=query, modality=spec.modality_weight) if kind == "text"
        else space.image(value, modality=spec.modality_weight)
        for kind, value in parts
    ]
    mean = np.sum(vectors, axis=0)
    v = truncate(mean, dimensions or spec.default_dim or spec.dim)
    return to_wire(v)
