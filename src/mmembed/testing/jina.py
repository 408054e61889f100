"""The emulated Jina endpoint: ``POST /v1/embeddings`` (texts and images in one ``input`` list)."""

from __future__ import annotations

import base64
import math
import random
import struct
from typing import Any, ClassVar

import numpy as np

from .imagedata import ImageDataError, decode_base64, decode_image, fetch_url
from .models import ModelSpec, find_model
from .space import count_tokens, embed, multivector
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["Jina"]

EMBEDDING_TYPES = ("float", "base64", "binary", "ubinary")
# Approximate billing: text tokens plus a start and end token; images by 512-px tiles (224 px for clip-v1).
IMAGE_TILE = {"jina-clip-v1": (224, 1000)}
DEFAULT_TILE = (512, 4000)
_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 402: "PAYMENT_REQUIRED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR", 429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT",
}

Item = tuple[str, Any]  # ("text", str) or ("image", PIL image)
DEFAULT_MODEL = "jina-clip-v2"
_BOTH = frozenset({"text", "image"})
_V4_TASKS = frozenset({"retrieval.query", "retrieval.passage", "text-matching", "code.query", "code.passage"})
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("jina", "jina-clip-v2", "jina-clip-v2", 1024, _BOTH, frozenset({"retrieval.query"}),
              frozenset({"retrieval.query"}), range(1, 1025), max_inputs=2048),
    ModelSpec("jina", "jina-clip-v1", "jina-clip-v1", 768, _BOTH, max_inputs=2048),
    ModelSpec("jina", "jina-embeddings-v4", "jina-embeddings-v4", 2048, _BOTH, _V4_TASKS,
              frozenset({"retrieval.query", "code.query"}), range(1, 2049), max_inputs=512, multivector_dim=128),
    # A text-only model, as in the 2023 recordings; handy for checking that clients refuse images for it.
    ModelSpec("jina", "jina-embeddings-v2-base-en", "jina-embeddings-v2-base-en", 768, frozenset({"text"}),
              max_inputs=2048),
)


def shuffled_order(n: int) -> list[int]:
    """A deterministic non-identity order of ``n`` items, so clients that do not sort by index get caught."""
    order = list(range(n))
    random.Random(n).shuffle(order)
    if n > 1 and order == sorted(order):
        order = order[1:] + order[:1]
    return order


def encode_embedding(vector: list[float], kind: str) -> Any:
    """``vector`` as Jina sends it for ``embedding_type`` ``kind``."""
    if kind == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    if kind in ("binary", "ubinary"):
        packed = np.packbits(np.asarray(vector) > 0)
        return [int(b) for b in (packed.view(np.int8) if kind == "binary" else packed)]
    return vector


class Jina(Endpoint):
    """``{model, input, task?, dimensions?, normalized?, embedding_type?, return_multivector?}`` → ``{model,
    object, usage, data}``; with ``return_multivector`` (jina-embeddings-v4) each ``data`` entry has
    ``embeddings``: one 128-float row per token, or per patch of an image (a 4x4 grid)."""

    provider: ClassVar[str] = "jina"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def __init__(self, *, unnormalized: bool = False) -> None:
        # Emulator(jina_unnormalized=True): answer non-unit vectors, as the 2023 API did.
        self.normalized = not unnormalized

    def matches(self, path: str) -> bool:
        return path == "/v1/embeddings"

    def error(self, err: ApiError, request_id: str) -> Reply:
        code = err.code or _CODES.get(err.status, "ERROR")
        return Reply.json(err.status, {"detail": err.message, "code": code, "request_id": request_id})

    def drop_one(self, payload: Any) -> Any:
        last = len(payload["data"]) - 1
        return {**payload, "data": [d for d in payload["data"] if d["index"] != last]}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        token = bearer(req.headers)
        if not token:
            raise ApiError(401, "Unauthorized: no API key given; send 'Authorization: Bearer <api key>'")
        if not settings.accepts(token):
            raise ApiError(401, "Unauthorized: invalid API key")
        if req.body_error is not None:
            raise ApiError(400, req.body_error)
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(422, "the request body must be a JSON object")
        name = body.get("model", DEFAULT_MODEL)
        spec = find_model("jina", name) if isinstance(name, str) else None
        if spec is None:
            raise ApiError(400, f"Model {name!r} is not supported", code="INVALID_MODEL")
        raw = body.get("input")
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw:
            raise ApiError(422, "'input' must be a non-empty list of strings or {text}/{image} objects")
        if len(raw) > spec.max_inputs:
            raise ApiError(400, f"input length is larger than the largest allowed size {spec.max_inputs}")
        task = self._task(spec, body.get("task"))
        dimensions = self._dimensions(spec, body.get("dimensions"))
        normalized = body.get("normalized", True)
        kind = body.get("embedding_type", "float")
        if not isinstance(normalized, bool):
            raise ApiError(422, "'normalized' must be a boolean")
        if kind not in EMBEDDING_TYPES:
            raise ApiError(422, f"'embedding_type' must be one of {', '.join(EMBEDDING_TYPES)}")
        multi = self._multivector(spec, body)
        items = [self._item(spec, i, item) for i, item in enumerate(raw)]
        if multi:
            data = self._multivectors(spec, items, task, kind)
        else:
            unit = normalized and self.normalized
            data = self._vectors(spec, items, task, dimensions, unit, kind)
        tokens = sum(self._tokens(spec, item) for item in items)
        usage = {"total_tokens": tokens, "prompt_tokens": tokens}
        return Reply.json(200, {"model": spec.name, "object": "list", "usage": usage, "data": data})

    @staticmethod
    def _vectors(
        spec: ModelSpec, items: list[Item], task: str | None, dimensions: int | None, unit: bool, kind: str
    ) -> list[dict[str, Any]]:
        """One ``{"object": "embedding", "index", "embedding"}`` entry per item, in a shuffled order."""
        data = []
        for i in shuffled_order(len(items)):
            modality, value = items[i]
            if modality == "text":
                vector = embed(spec, text=value, task=task, dimensions=dimensions, normalized=unit)
            else:
                vector = embed(spec, image=value, dimensions=dimensions, normalized=unit)
            data.append({"object": "embedding", "index": i, "embedding": encode_embedding(vector, kind)})
        return data

    @staticmethod
    def _multivector(spec: ModelSpec, body: dict[str, Any]) -> bool:
        multi = body.get("return_multivector", False)
        if not isinstance(multi, bool):
            raise ApiError(422, "'return_multivector' must be a boolean")
        if multi and spec.multivector_dim is None:
            raise ApiError(422, f"{spec.name} does not support 'return_multivector'")
        if multi and body.get("dimensions") is not None:
            raise ApiError(422, "'return_multivector' cannot be used with 'dimensions'")
        return multi

    @staticmethod
    def _multivectors(spec: ModelSpec, items: list[Item], task: str | None, kind: str) -> list[dict[str, Any]]:
        """One ``{"object": "embeddings", "index", "embeddings": rows}`` entry per item, in a shuffled order."""
        data = []
        for i in shuffled_order(len(items)):
            modality, value = items[i]
            if modality == "text":
                rows = multivector(spec, text=value, query=spec.is_query(task))
            else:
                rows = multivector(spec, image=value)
            data.append({"object": "embeddings", "index": i, "embeddings": [encode_embedding(r, kind) for r in rows]})
        return data

    @staticmethod
    def _task(spec: ModelSpec, task: object) -> str | None:
        if task is None:
            return None
        if not spec.tasks:
            raise ApiError(422, f"{spec.name} does not accept a 'task'")
        if task not in spec.tasks:
            raise ApiError(422, f"'task' for {spec.name} must be one of {', '.join(sorted(spec.tasks))}")
        return str(task)

    @staticmethod
    def _dimensions(spec: ModelSpec, value: object) -> int | None:
        if value is None:
            return None
        if spec.dimensions is None:
            raise ApiError(422, f"{spec.name} does not accept 'dimensions'")
        if isinstance(value, bool) or not isinstance(value, int) or value not in spec.dimensions:
            raise ApiError(422, f"'dimensions' must be an integer from 1 to {spec.dim} for {spec.name}")
        return value

    @staticmethod
    def _item(spec: ModelSpec, index: int, item: object) -> Item:
        if isinstance(item, dict) and len(item) == 1:
            ((key, value),) = item.items()
        elif isinstance(item, str):
            key, value = "text", item
        else:
            key, value = "", None
        if key not in ("text", "image", "url", "bytes") or not isinstance(value, str):
            raise ApiError(422, f"input[{index}] must be a string, {{'text': str}} or {{'image': str}}")
        if key == "text":
            return "text", value
        if "image" not in spec.modalities:
            raise ApiError(400, f"input[{index}]: {spec.name} does not accept images")
        is_url = key == "url" or (key == "image" and value.startswith(("http://", "https://")))
        try:
            data = fetch_url(value) if is_url else decode_base64(value)
            return "image", decode_image(data)
        except ImageDataError as exc:
            raise ApiError(400, f"input[{index}]: {exc}") from None

    @staticmethod
    def _tokens(spec: ModelSpec, item: Item) -> int:
        modality, value = item
        if modality == "text":
            return count_tokens(value) + 2
        side, per_tile = IMAGE_TILE.get(spec.name, DEFAULT_TILE)
        width, height = value.size
        return int(per_tile * math.ceil(width / side) * math.ceil(height / side))
