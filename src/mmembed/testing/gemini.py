"""The emulated Gemini Developer API: ``POST /v1beta/models/{m}:embedContent`` and ``…:batchEmbedContents``.

One ``EmbedContentRequest`` per call, or ``{"requests": [...]}`` (at most 100, each naming
``"model": "models/{m}"``); the key in ``x-goog-api-key`` (or ``?key=``). Fields of Google Cloud's API
(``embedContentConfig``, ``autoTruncate``, …) and unknown fields are refused. The Content checks are the
family's (:mod:`mmembed.testing._gemini_embedding`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ._gemini_embedding import INVALID_KEY, ContentEndpoint, camel, family_rows, unknown_field
from .models import ModelSpec, find_model
from .space import embed_parts
from .wire import ApiError, Incoming, Reply, Settings

__all__ = ["GeminiApi"]

PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(embedContent|batchEmbedContents)$")
MAX_REQUESTS = 100
CLOUD_ONLY = frozenset({"embedContentConfig", "autoTruncate", "documentOcr", "audioTrackExtraction", "mimeType"})
REQUEST_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
_TASK_TYPES = frozenset(
    {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
     "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}
)
_QUERY_TYPES = frozenset({"RETRIEVAL_QUERY", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"})
# The API batches up to 100 requests per call; gemini-embedding-001 is text only and takes taskType.
MODELS: tuple[ModelSpec, ...] = (
    *family_rows("gemini", max_inputs=MAX_REQUESTS),
    ModelSpec("gemini", "gemini-embedding-001", "gemini-embedding-001", 3072, frozenset({"text"}), _TASK_TYPES,
              _QUERY_TYPES, range(128, 3073), max_inputs=MAX_REQUESTS, embed_content=True),
)


class GeminiApi(ContentEndpoint):
    """The Gemini Developer API's embedding methods (``generativelanguage.googleapis.com``)."""

    provider: ClassVar[str] = "gemini"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def matches(self, path: str) -> bool:
        return PATH.match(path) is not None

    def drop_one(self, payload: Any) -> Any:
        if "embeddings" in payload:
            return {**payload, "embeddings": payload["embeddings"][:-1]}
        return {}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        key = req.headers.get("x-goog-api-key") or (req.query.get("key") or [""])[0]
        if not key:
            raise ApiError(403, "Method doesn't allow unregistered callers (callers without established identity)."
                                " Please use API Key or other form of API consumer identity to call this API.")
        if not settings.accepts(key):
            raise ApiError(400, "API key not valid. Please pass a valid API key.", details=INVALID_KEY)
        match = PATH.match(req.path)
        if match is None:  # matches() said it would
            raise ApiError(404, "Not Found")
        version, name, method = match.groups()
        spec = find_model("gemini", name)
        if spec is None:
            raise ApiError(404, f"models/{name} is not found for API version {version}, or is not supported for "
                                f"{method}. Call ListModels to see the list of available models.")
        if req.body_error is not None:
            raise ApiError(400, f"Invalid JSON payload received. {req.body_error}")
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        if method == "embedContent":
            return Reply.json(200, {"embedding": {"values": self._one(spec, body, "", required_model=False)}})
        for field in body:
            if field != "requests":
                raise unknown_field(field, "")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests must be a non-empty list")
        if len(requests) > MAX_REQUESTS:
            raise ApiError(400, f"* BatchEmbedContentsRequest.requests: at most {MAX_REQUESTS} requests can be in "
                                "one batch")
        embeddings = [{"values": self._one(spec, r, f"requests[{i}]", required_model=True)}
                      for i, r in enumerate(requests)]
        return Reply.json(200, {"embeddings": embeddings})

    def _one(self, spec: ModelSpec, request: object, where: str, *, required_model: bool) -> list[float]:
        if not isinstance(request, dict):
            raise ApiError(400, f"{where or 'request'} must be an object")
        request = camel(request)
        for field in request:
            if field in CLOUD_ONLY:
                raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{field}\" at '{where}': Cannot "
                                    "find field. (It is a parameter of Google Cloud's API, not of the Gemini API.)")
            if field not in REQUEST_FIELDS:
                raise unknown_field(field, where)
        model = request.get("model")
        if (required_model or model is not None) and model != f"models/{spec.name}":
            raise ApiError(400, f"* BatchEmbedContentsRequest.{where}.model: the model in the request ({model!r}) "
                                f"must match the model in the URL ('models/{spec.name}')")
        query = self.task(spec, request.get("taskType"), request.get("title"), where)
        dims = self.dimensions(request.get("outputDimensionality"), spec, where)
        vector, _ = self.content_vector(spec, request.get("content"), f"{where}.content".lstrip("."), query)
        return embed_parts(spec, [vector], dims)
