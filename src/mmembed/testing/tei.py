"""The emulated text-embeddings-inference server: ``POST /embed`` (``[[...], ...]``), ``GET /info``; more than
``max_client_batch_size`` inputs → 422; ``{"error", "error_type"}`` errors; 429 beyond its queue."""

from __future__ import annotations

from typing import Any, ClassVar

from ._selfhosted import ServerEndpoint
from .models import ModelSpec
from .wire import ApiError, Reply

__all__ = ["Tei"]

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("tei", "BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", 384, frozenset({"text"}),
              frozenset({"query"}), frozenset({"query"}), max_inputs=32),
)
_ERROR_TYPES = {400: "Empty", 413: "PayloadTooLarge", 422: "Validation", 429: "Overloaded", 503: "Unhealthy"}


class Tei(ServerEndpoint):
    """TEI's native route; ``max_client_batch_size`` as the server was started with (32 by default)."""

    provider: ClassVar[str] = "tei"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS
    routes: ClassVar[tuple[str, ...]] = ("/embed", "/info")
    busy_status: ClassVar[int] = 429
    busy_message: ClassVar[str] = "Model is overloaded"
    default_host: ClassVar[str] = "http://localhost:8080"

    def __init__(self, *, max_client_batch_size: int = 32, **options: Any) -> None:
        super().__init__(**options)
        self.max_client_batch_size = max_client_batch_size

    def error(self, err: ApiError, request_id: str) -> Reply:
        if err.status == 401:
            return Reply(401, b"", "text/plain")
        return Reply.json(err.status, {"error": err.message, "error_type": _ERROR_TYPES.get(err.status, "Backend")})

    def describe(self) -> Any:
        return {"model_id": self.spec.name, "model_sha": None, "model_dtype": "float16",
                "model_type": {"embedding": {"pooling": "cls"}}, "max_concurrent_requests": 512,
                "max_input_length": 512, "max_batch_tokens": 16384, "max_client_batch_size": self.max_client_batch_size,
                "auto_truncate": True, "tokenization_workers": 2, "version": "1.8.0"}

    def embed_request(self, body: dict[str, Any]) -> Reply:
        raw = body.get("inputs")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ApiError(422, "Failed to deserialize the JSON body: `inputs` must be a string or strings")
        if not inputs:
            raise ApiError(400, "`inputs` cannot be empty")
        if len(inputs) > self.max_client_batch_size:
            raise ApiError(422, f"batch size {len(inputs)} > maximum allowed batch size {self.max_client_batch_size}")
        prompt = body.get("prompt_name")
        if prompt is not None and prompt not in self.spec.tasks:
            raise ApiError(422, f"Prompt name `{prompt}` is not defined in the model configuration")
        vectors = [self.vector(("text", text), query=prompt == "query") for text in inputs]
        self.serve(len(inputs))
        return Reply.json(200, vectors)
