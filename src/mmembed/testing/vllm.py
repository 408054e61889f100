"""The emulated vLLM server: ``POST /v1/embeddings`` (texts in ``input``, images in chat ``messages``) and
``GET /v1/models``; errors as ``{"error": {"message", "type", "param", "code"}}``; 503 beyond its queue.
``POST /pooling`` with ``"task": "token_embed"`` answers a token-embedding model (ColPali: 128-d rows, one per
token, one per patch of a 4x4 grid of an image), which has no ``/v1/embeddings`` route."""

from __future__ import annotations

from typing import Any, ClassVar

from ._selfhosted import Part, ServerEndpoint
from .models import ModelSpec
from .wire import ApiError, Incoming, Reply, Settings

__all__ = ["Vllm"]

_BOTH = frozenset({"text", "image"})
_VLM = frozenset({"text", "image", "interleaved"})
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("vllm", "openai/clip-vit-base-patch32", "openai/clip-vit-base-patch32", 512, _BOTH, max_inputs=2048),
    ModelSpec("vllm", "Qwen/Qwen3-VL-Embedding-2B", "Qwen/Qwen3-VL-Embedding-2B", 2048, _VLM, max_inputs=2048,
              modality_weight=0.8),
    # A token-embedding model: /pooling only (Emulator(vllm_model="vidore/colpali-v1.3-hf")).
    ModelSpec("vllm", "vidore/colpali-v1.3-hf", "colpali", 128, _BOTH, max_inputs=2048, multivector_dim=128),
)
_TYPES = {400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError", 503: "ServiceUnavailableError"}

class Vllm(ServerEndpoint):
    """vLLM's OpenAI-compatible embeddings route; ``model`` chooses the served model (CLIP by default).

    ``batched_chat=True`` takes a list of conversations in ``messages`` (newer servers); by default a request
    holds one conversation, as every vLLM version takes. ``flat_errors=True`` answers errors in the older flat
    shape ``{"object": "error", "message", ...}``.
    """

    provider: ClassVar[str] = "vllm"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS
    routes: ClassVar[tuple[str, ...]] = ("/v1/embeddings", "/v1/models", "/pooling")
    busy_status: ClassVar[int] = 503

    def __init__(self, *, batched_chat: bool = False, flat_errors: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.batched_chat = batched_chat
        self.flat_errors = flat_errors

    def error(self, err: ApiError, request_id: str) -> Reply:
        if err.status == 401:
            return Reply.json(401, {"error": "Unauthorized"})
        error = {"message": err.message, "type": _TYPES.get(err.status, "InternalServerError"), "param": None,
                 "code": err.status}
        return Reply.json(err.status, {"object": "error", **error} if self.flat_errors else {"error": error})

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        if req.path.endswith("/pooling"):  # vLLM checks keys on /v1 routes only
            if req.method != "POST":
                raise ApiError(405, "Method Not Allowed")
            return self._pooling(self.json_object(req))
        if self.spec.multivector_dim is not None and req.path.endswith("/v1/embeddings"):
            return Reply.json(404, {"detail": "Not Found"})  # a token-only model has no embed route
        return super().handle(req, settings)

    def _pooling(self, body: dict[str, Any]) -> Reply:
        self.check_model(body)
        supported = ("token_embed",) if self.spec.multivector_dim is not None else ("embed",)
        task = body.get("task", supported[0])
        if task not in supported:
            raise ApiError(400, f"Unsupported task: {task!r} Supported tasks: {supported}")
        if body.get("dimensions") is not None:
            raise ApiError(400, "dimensions is currently not supported")
        if task == "embed":
            return self.embed_request({k: v for k, v in body.items() if k != "task"})
        inputs = self._inputs(body)
        self.serve(len(inputs))
        data = [{"index": i, "object": "pooling", "data": self.rows(parts)} for i, parts in enumerate(inputs)]
        return Reply.json(200, {"id": "pool-emulated", "object": "list", "created": 1765000000,
                                "model": self.spec.name, "data": data, "usage": {"prompt_tokens": 0}})

    def describe(self) -> Any:
        card = {"id": self.spec.name, "object": "model", "created": 1765000000, "owned_by": "vllm",
                "root": self.spec.name, "parent": None, "max_model_len": 77, "permission": []}
        return {"object": "list", "data": [card]}

    def embed_request(self, body: dict[str, Any]) -> Reply:
        self.check_model(body)
        inputs = self._inputs(body)
        vectors = [self.joint(p) if len(p) > 1 else self.vector(p[0]) for p in inputs]
        self.serve(len(inputs))
        return Reply.json(200, self.indexed(vectors, self.spec.name))

    def _inputs(self, body: dict[str, Any]) -> list[list[Part]]:
        """The parts of each input: a text of ``input``, or a conversation of ``messages``."""
        if ("input" in body) == ("messages" in body):
            raise ApiError(400, "Either `input` or `messages` must be given, not both")
        if "input" in body:
            raw = body["input"]
            texts = [raw] if isinstance(raw, str) else raw
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise ApiError(400, "`input` must be a string or a non-empty list of strings")
            return [[("text", t)] for t in texts]
        conversations = self._conversations(body["messages"])
        return [self._parts(c, i) for i, c in enumerate(conversations)]

    def _conversations(self, messages: Any) -> list[list[Any]]:
        if isinstance(messages, list) and messages and all(isinstance(m, list) for m in messages):
            if not self.batched_chat:
                raise ApiError(400, "messages: Input should be a valid dictionary")  # an older server
            return messages
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "`messages` must be a non-empty list")
        return [messages]

    def _parts(self, conversation: list[Any], index: int) -> list[Part]:
        parts: list[Part] = []
        for message in conversation:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            if not isinstance(content, list):
                raise ApiError(400, f"messages[{index}]: a message needs a content list")
            parts += [self._part(p, index) for p in content]
        kinds = {kind for kind, _ in parts}
        if "interleaved" not in self.spec.modalities and len(kinds) > 1:
            raise ApiError(400, "CLIP accepts text-only or image-only inputs, not both!")
        if "interleaved" not in self.spec.modalities and sum(k == "image" for k, _ in parts) > 1:
            raise ApiError(400, "At most 1 image(s) may be provided in one prompt.")
        if not parts:
            raise ApiError(400, f"messages[{index}]: nothing to embed")
        return parts

    def _part(self, part: Any, index: int) -> Part:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            return "text", part["text"]
        if kind == "image_url":
            image_url = part.get("image_url")
            if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
                raise ApiError(400, f"messages[{index}]: image_url must be an object with a url")
            return "image", self.picture(image_url["url"], f"messages[{index}]")
        raise ApiError(400, f"messages[{index}]: unknown content part {kind!r}")
