"""The emulated Cohere endpoint: ``POST /v2/embed`` (``texts``, ``images`` or ``inputs`` of typed segments).

Strict, as the held-out stub of PROVIDERS-NEXT is: ``model`` and ``input_type`` are required, and exactly one
of ``texts`` / ``images`` / ``inputs``; ``input_type: "image"`` goes with ``images`` only (and ``images`` with
it); an ``image_url`` segment must be an object ``{"url": "data:..."}`` (a bare string is refused, as are extra
keys); at most 96 texts or inputs, 20 MB of image data URIs per request; ``output_dimension`` ∈ {256, 512,
1024, 1536}, ``truncate`` ∈ {NONE, START, END}. Each input gets ONE vector (several segments: the normalised
mean of their fake vectors). Cohere limits images apart from texts: ``images_per_minute`` (an emulator knob,
None: unlimited) answers 429 once more images than that arrive within 60 s. Errors are ``{"id", "message"}``.
"""

from __future__ import annotations

import base64
import struct
import uuid
from typing import Any, ClassVar

import numpy as np

from ..ratelimit import RateLimiter
from ._cohere_v4 import items, vector
from .models import ModelSpec, find_model
from .space import count_tokens, to_wire
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["Cohere"]

KEYS = frozenset(
    {"model", "input_type", "texts", "images", "inputs", "embedding_types", "output_dimension", "max_tokens",
     "truncate", "priority"}
)
INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering", "image"})
EMBEDDING_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary", "base64"})
# Cohere's input types are a superset of its search/classification/clustering task names.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("cohere", "embed-v4.0", "cohere-embed-v4", 1536, frozenset({"text", "image"}),
              frozenset({"search_document", "search_query", "classification", "clustering"}),
              frozenset({"search_query"}), dimensions=(256, 512, 1024, 1536), max_inputs=96, modality_weight=1.0),
)
IMAGE_WINDOW = 60.0  # seconds the image limit counts over (tests shorten it)


class Cohere(Endpoint):
    """``{model, input_type, embedding_types, texts|images|inputs, ...}`` → ``{id, embeddings: {float: ...}}``."""

    provider: ClassVar[str] = "cohere"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def __init__(self, *, images_per_minute: float | None = None) -> None:
        self.images_per_minute = images_per_minute
        # The client's own limiter, answering at once: ``images_per_minute`` in any IMAGE_WINDOW ("minute").
        self._images: RateLimiter | None = None
        if images_per_minute:
            self._images = RateLimiter(images_per_minute * 60 / IMAGE_WINDOW, window=IMAGE_WINDOW, paced=False)

    def matches(self, path: str) -> bool:
        return path == "/v2/embed"

    def error(self, err: ApiError, request_id: str) -> Reply:
        return Reply.json(err.status, {"id": request_id, "message": err.message})

    def drop_one(self, payload: Any) -> Any:
        embeddings = {kind: vectors[:-1] for kind, vectors in payload["embeddings"].items()}
        return {**payload, "embeddings": embeddings}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        token = bearer(req.headers)
        if not token or not settings.accepts(token):
            raise ApiError(401, "invalid api token")
        if req.body_error is not None:
            raise ApiError(400, req.body_error)
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(400, "invalid request: the body must be a JSON object")
        unknown = sorted(set(body) - KEYS)
        if unknown:
            raise ApiError(400, f"invalid request: unknown fields {unknown}")
        model = body.get("model")
        spec = find_model("cohere", model) if isinstance(model, str) else None
        if spec is None:
            raise ApiError(404, f"model {body.get('model')!r} not found")
        input_type = body.get("input_type")
        if input_type not in INPUT_TYPES:
            raise ApiError(400, f"invalid request: input_type must be one of {sorted(INPUT_TYPES)}")
        given = [key for key in ("texts", "images", "inputs") if body.get(key) is not None]
        if len(given) != 1:
            raise ApiError(400, "invalid request: give exactly one of texts, images or inputs")
        (field,) = given
        if (input_type == "image") != (field == "images"):
            raise ApiError(400, "invalid request: input_type 'image' goes with images, and images with it only")
        types = body.get("embedding_types", ["float"])
        if not isinstance(types, list) or not types or not set(types) <= EMBEDDING_TYPES:
            raise ApiError(400, f"invalid request: embedding_types must be a subset of {sorted(EMBEDDING_TYPES)}")
        dimensions = body.get("output_dimension")
        if dimensions is not None and (
            isinstance(dimensions, bool) or spec.dimensions is None or dimensions not in spec.dimensions
        ):
            raise ApiError(400, f"invalid request: output_dimension must be one of {list(spec.dimensions or ())}")
        if body.get("truncate", "END") not in ("NONE", "START", "END"):
            raise ApiError(400, "invalid request: truncate must be one of NONE, START, END")
        priority = body.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 999:
            raise ApiError(400, "invalid request: priority must be an integer from 0 to 999")
        entries = items(field, body[field])
        images = sum(kind == "image" for parts in entries for kind, _ in parts)
        if images:
            self._take_images(images)
        query = input_type == "search_query"
        vectors = [vector(spec, parts, query, dimensions) for parts in entries]
        tokens = sum(count_tokens(v) for parts in entries for k, v in parts if k == "text")
        payload = {
            "id": str(uuid.uuid4()),
            "embeddings": {kind: _encode(vectors, kind) for kind in types},
            "texts": [v for parts in entries for k, v in parts if k == "text"],
            "images": [
                {"width": v.width, "height": v.height, "format": (v.format or "").lower(), "bit_depth": 8}
                for parts in entries for k, v in parts if k == "image"
            ],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens, "images": images}},
            "response_type": "embeddings_by_type",
        }
        return Reply.json(200, payload)

    def _take_images(self, count: int) -> None:
        """Count ``count`` images against the per-minute image limit, or refuse the request with a 429."""
        if self._images is None or not count:
            return
        if count > (self._images.quota or 0) or self._images.take(count) > 0:
            raise ApiError(
                429,
                f"You are using a Trial key, which is limited to {self.images_per_minute:g} images per minute "
                "for the embed endpoint (emulated)",
            )


def _encode(vectors: list[np.ndarray], kind: str) -> list[Any]:
    if kind == "float":
        return [to_wire(v) for v in vectors]
    if kind == "base64":
        return [base64.b64encode(struct.pack(f"<{v.size}f", *v)).decode("ascii") for v in vectors]
    if kind in ("int8", "uint8"):
        offset = 0 if kind == "int8" else 128
        return [[int(x) + offset for x in np.clip(np.rint(v * 127 / max(abs(v).max(), 1e-9)), -128, 127)]
                for v in vectors]
    packed = [np.packbits(v > 0) for v in vectors]
    return [[int(b) for b in (p.view(np.int8) if kind == "binary" else p)] for p in packed]
