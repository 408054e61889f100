"""The emulated NVIDIA NIM embedding service: ``POST /v1/embeddings`` (``input_type``, ``modality``, data-URL
images, ``<img src='…'/>`` text+image), ``GET /v1/models``; unknown fields refused; 503 beyond its queue."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ._selfhosted import Part, ServerEndpoint
from .models import ModelSpec
from .wire import ApiError, Reply

__all__ = ["Nim"]

FIELDS = frozenset({"model", "input", "input_type", "modality", "embedding_type", "encoding_format", "dimensions",
                    "truncate", "user"})
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("nim", "nvidia/llama-nemotron-embed-vl-1b-v2", "nvidia/llama-nemotron-embed-vl-1b-v2", 2048,
              frozenset({"text", "image", "text_image"}), frozenset({"query", "passage"}), frozenset({"query"}),
              max_inputs=64, modality_weight=0.8),
    ModelSpec("nim", "nvidia/nvclip", "nvidia/nvclip", 1024, frozenset({"text", "image"}), max_inputs=64),
    ModelSpec("nim", "nvidia/nv-embedqa-e5-v5", "nvidia/nv-embedqa-e5-v5", 1024, frozenset({"text"}),
              frozenset({"query", "passage"}), frozenset({"query"}), max_inputs=64),
)
_IMG = re.compile(r"<img src='([^']*)'\s*/>")


class Nim(ServerEndpoint):
    """An embedding NIM; ``model`` chooses the served model (the Nemotron VL embedder by default)."""

    provider: ClassVar[str] = "nim"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS
    routes: ClassVar[tuple[str, ...]] = ("/v1/embeddings", "/v1/models")
    busy_status: ClassVar[int] = 503

    def error(self, err: ApiError, request_id: str) -> Reply:
        if err.status == 422 and err.loc:
            detail = {"type": "extra_forbidden", "loc": ["body", *err.loc], "msg": err.message}
            return Reply.json(400, {"detail": detail})
        return Reply.json(err.status, {"object": "error", "message": err.message, "type": "invalid_request_error"})

    def describe(self) -> Any:
        return {"object": "list", "data": [{"id": self.spec.name, "object": "model", "owned_by": "nvidia"}]}

    def embed_request(self, body: dict[str, Any]) -> Reply:
        extra = sorted(set(body) - FIELDS)
        if extra:
            raise ApiError(422, "Extra inputs are not permitted", loc=(extra[0],))
        self.check_model(body, required=True)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise ApiError(400, "'input' must be a string or a non-empty list of strings")
        if len(inputs) > self.spec.max_inputs:
            raise ApiError(400, f"batch size {len(inputs)} exceeds the model's maximum of {self.spec.max_inputs}")
        input_type = body.get("input_type")
        if input_type is not None and input_type not in ("query", "passage"):
            raise ApiError(400, "'input_type' must be 'query' or 'passage'")
        modalities = self._modalities(body.get("modality"), len(inputs))
        parts = [self._parts(value, modalities[i], i) for i, value in enumerate(inputs)]
        if input_type is None and self.spec.tasks and all(k == "text" for p in parts for k, _ in p):
            raise ApiError(400, "'input_type' parameter is required for asymmetric models")
        if input_type == "query" and any(k != "text" for p in parts for k, _ in p):
            raise ApiError(400, "image inputs take input_type 'passage' or none")
        query = input_type == "query"
        vectors = [self.joint(p, query=query) if len(p) > 1 else self.vector(p[0], query=query) for p in parts]
        self.serve(len(parts))
        return Reply.json(200, self.indexed(vectors, self.spec.name))

    @staticmethod
    def _modalities(value: Any, count: int) -> list[str | None]:
        if value is None or isinstance(value, str):
            return [value] * count
        if not isinstance(value, list) or len(value) != count:
            raise ApiError(400, "'modality' must be one value or a list as long as 'input'")
        return value

    def _parts(self, value: str, modality: str | None, index: int) -> list[Part]:
        images = _IMG.findall(value)
        text = _IMG.sub("", value).strip()
        if not images and value.startswith("data:image/"):
            images, text = [value], ""
        kind = "text_image" if images and text else "image" if images else "text"
        if modality is not None and modality != kind:
            raise ApiError(400, f"input[{index}] is {kind}, not the {modality} its modality says")
        if kind not in self.spec.modalities:
            raise ApiError(400, f"{self.spec.name} does not accept {kind} inputs")
        parts: list[Part] = [("text", text)] if text else []
        return parts + [("image", self.picture(url, f"input[{index}]")) for url in images]
