"""The emulated Infinity server: ``POST /embeddings`` with one ``modality`` per request, ``GET /models`` with
``capabilities``; FastAPI's 422 for bad bodies, ``{"error": {...}}`` otherwise; 429 beyond its queue. A ColPali
merged checkpoint (``Emulator(infinity_model="michaelfeil/colpali-v1.2-merged")``) answers each ``embedding`` as
a list of 128-d token rows (one per token, one per patch of a 4x4 grid), not re-normalised, as Infinity does."""

from __future__ import annotations

from typing import Any, ClassVar

from ._selfhosted import Part, ServerEndpoint
from .imagedata import ImageDataError, decode_base64
from .models import ModelSpec
from .wire import ApiError, Reply

__all__ = ["Infinity"]

MAX_TEXTS = 2048
MAX_MEDIA = 32
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("infinity", "openai/clip-vit-base-patch32", "openai/clip-vit-base-patch32", 512,
              frozenset({"text", "image"}), max_inputs=MAX_TEXTS),
    ModelSpec("infinity", "laion/clap-htsat-unfused", "laion/clap-htsat-unfused", 512,
              frozenset({"text", "audio"}), max_inputs=MAX_TEXTS),
    ModelSpec("infinity", "BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", 384, frozenset({"text"}),
              max_inputs=MAX_TEXTS),
    ModelSpec("infinity", "michaelfeil/colpali-v1.2-merged", "colpali", 128, frozenset({"text", "image"}),
              max_inputs=MAX_TEXTS, multivector_dim=128),
)
_CAPABILITIES = {"text": "embed", "image": "image_embed", "audio": "audio_embed"}


class Infinity(ServerEndpoint):
    """Infinity's embeddings route; ``model`` chooses the served model (CLIP by default)."""

    provider: ClassVar[str] = "infinity"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS
    # Under /v1 too: a server started with --url-prefix /v1.
    routes: ClassVar[tuple[str, ...]] = ("/embeddings", "/models", "/v1/embeddings", "/v1/models")
    busy_status: ClassVar[int] = 429
    default_host: ClassVar[str] = "http://localhost:7997"

    @property
    def busy_message(self) -> str:  # type: ignore[override]
        return f"model {self.spec.name} is currently overloaded"

    def error(self, err: ApiError, request_id: str) -> Reply:
        if err.status == 401:
            return Reply.json(401, {"detail": "Unauthorized"}, (("WWW-Authenticate", "Bearer"),))
        if err.status == 422:
            detail = [{"type": "value_error", "loc": ["body", *(err.loc or ())], "msg": err.message, "input": None}]
            return Reply.json(422, {"detail": detail})
        return Reply.json(err.status, {"error": {"message": err.message, "type": None, "param": None,
                                                 "code": err.status}})

    def describe(self) -> Any:
        capabilities = [_CAPABILITIES[m] for m in ("text", "image", "audio") if m in self.spec.modalities]
        stats = {"queue_fraction": 0.0, "queue_absolute": 0, "results_pending": 0, "batch_size": 32}
        card = {"id": self.spec.name, "stats": stats, "object": "model", "owned_by": "infinity",
                "created": 1765000000, "backend": "torch", "capabilities": capabilities}
        return {"data": [card], "object": "list"}

    def embed_request(self, body: dict[str, Any]) -> Reply:
        modality = body.get("modality", "text")
        if modality not in _CAPABILITIES:
            raise ApiError(422, "Input tag 'x' found using 'modality' does not match any of the expected tags",
                           loc=("modality",))
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        limit = MAX_TEXTS if modality == "text" else MAX_MEDIA
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= limit or not all(isinstance(i, str) for i in inputs):
            raise ApiError(422, f"input must be a string or a list of 1 to {limit} strings", loc=("input",))
        if modality not in self.spec.modalities:
            raise ApiError(400, f"ModelNotDeployedError: model=`{self.spec.name}` does not support "
                                f"`{_CAPABILITIES[modality]}` for modality `{modality}`.")
        parts = [self._part(modality, value, i) for i, value in enumerate(inputs)]
        vectors: list[Any] = [self._token_rows(p) if self.spec.multivector_dim else self.vector(p) for p in parts]
        self.serve(len(parts))
        return Reply.json(200, {**self.indexed(vectors, self.spec.name), "id": "infinity-emulated"})

    def _token_rows(self, part: Part) -> list[list[float]]:
        """A ColPali answer as Infinity passes it on: the model's rows at their own lengths (not unit)."""
        return [[value * (1.5 + 0.25 * (j % 3)) for value in row] for j, row in enumerate(self.rows([part]))]

    def _part(self, modality: str, value: str, index: int) -> Part:
        if modality == "text":
            return "text", value.strip()
        if not value.startswith(("data:", "http://", "https://")):
            raise ApiError(422, "a URL or a data URI is required", loc=("input", index))
        if modality == "image":
            return "image", self.picture(value, f"input[{index}]")
        try:
            return "audio", decode_base64(value)
        except ImageDataError as exc:
            raise ApiError(400, f"input[{index}]: {exc}") from None
