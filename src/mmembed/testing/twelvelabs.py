"""The emulated Twelve Labs Embed API v2: ``POST /v1.3/embed-v2`` and the tasks API (``/v1.3/embed-v2/tasks``).

Strict as the real API is: ``x-api-key`` (not Bearer); ``model_name`` ``marengo3.0``; ``input_type`` and only the
object it names; a media source with exactly one of ``url``/``base64_string``/``asset_id``; images JPEG/PNG of at
least 128 px and at most 5 MB; synchronous audio and video of at most 10 minutes (36 MB of base64);
``embedding_type`` only with two or more ``embedding_option`` values; unknown parameters answer 400
``parameter_unknown``. Errors are ``{"code", "message"}``; a 429 is ``too_many_requests`` with ``Retry-After``.
Tasks take audio and video only; a created task is ``processing`` for ``task_polls`` polls, then ``ready`` with
its ``data``.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, ClassVar

from .clips import media_vector
from .marengo import marengo_vector, media_bytes
from .models import ModelSpec, find_model
from .space import to_wire
from .wire import ApiError, Endpoint, Incoming, Reply, Settings

__all__ = ["TwelveLabs"]

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("twelvelabs", "marengo3.0", "marengo-3.0", 512, frozenset({"text", "image", "video", "audio"}),
              modality_weight=1.0),
)
SYNC_SECONDS = 600.0
SYNC_BASE64 = 36 * 1024 * 1024
TASK_SECONDS = 4 * 3600.0
MEDIA_KEYS = {"media_source", "start_sec", "end_sec", "segmentation", "embedding_option", "embedding_scope",
              "embedding_type"}
_STATUS_CODES = {400: "parameter_invalid", 401: "api_key_invalid", 404: "resource_not_exist",
                 429: "too_many_requests"}


class TwelveLabs(Endpoint):
    """``{input_type, model_name, <input_type>: {...}}`` → ``{data: [{embedding, ...}], metadata}``."""

    provider: ClassVar[str] = "twelvelabs"
    methods: ClassVar[frozenset[str]] = frozenset({"POST", "GET"})
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def __init__(self, task_polls: int = 1) -> None:
        self.task_polls = task_polls
        self._tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def matches(self, path: str) -> bool:
        return path == "/v1.3/embed-v2" or path.startswith("/v1.3/embed-v2/tasks")

    def error(self, err: ApiError, request_id: str) -> Reply:
        code = err.code or _STATUS_CODES.get(err.status, "internal_error")
        return Reply.json(err.status, {"code": code, "message": err.message})

    def drop_one(self, payload: Any) -> Any:
        return {**payload, "data": payload.get("data", [])[:-1]}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        key = req.headers.get("x-api-key", "")
        if not settings.accepts(key):
            raise ApiError(401, "The API key is invalid. Please check your API key and try again.",
                           code="api_key_invalid")
        if req.path.startswith("/v1.3/embed-v2/tasks/"):
            return self._poll(req)
        if req.method != "POST":
            raise ApiError(405, "Method Not Allowed")
        body = req.json
        if req.body_error is not None or not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object", code="parameter_invalid")
        task = req.path == "/v1.3/embed-v2/tasks"
        data = self._embed(body, task)
        if not task:
            return Reply.json(200, {"data": data, "metadata": {}})
        task_id = uuid.uuid4().hex[:24]
        with self._lock:
            self._tasks[task_id] = {"polls": 0, "data": data}
        return Reply.json(200, {"_id": task_id, "status": "processing"})

    def _poll(self, req: Incoming) -> Reply:
        task_id = req.path.rsplit("/", 1)[1]
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise ApiError(404, f"The embedding task {task_id} does not exist.", code="resource_not_exist")
            task["polls"] += 1
            ready = task["polls"] > self.task_polls
        if not ready:
            return Reply.json(200, {"_id": task_id, "status": "processing"})
        return Reply.json(200, {"_id": task_id, "status": "ready", "data": task["data"], "metadata": {}})

    def _embed(self, body: dict[str, Any], task: bool) -> list[dict[str, Any]]:
        kind = str(body.get("input_type"))
        kinds = ("audio", "video") if task else ("text", "image", "text_image", "audio", "video")
        if kind not in kinds:
            raise ApiError(400, f"input_type must be one of {', '.join(kinds)}", code="parameter_invalid")
        extra = set(body) - {"input_type", "model_name", kind}
        if extra:
            raise ApiError(400, f"Unknown parameter: {sorted(extra)[0]}", code="parameter_unknown")
        spec = find_model("twelvelabs", str(body.get("model_name")))
        if spec is None:
            raise ApiError(400, "model_name must be marengo3.0", code="parameter_invalid")
        content = body.get(kind)
        if not isinstance(content, dict):
            raise ApiError(400, f"The {kind} object is required", code="parameter_not_provided")
        if kind in ("text", "image", "text_image"):
            vector = marengo_vector(spec, kind, content, camel=False, min_side=128)
            return [_entry(to_wire(vector), None, None, None, None)]
        return [self._media(spec, kind, content, task)]

    @staticmethod
    def _media(spec: ModelSpec, kind: str, content: dict[str, Any], task: bool) -> dict[str, Any]:
        extra = set(content) - MEDIA_KEYS
        if extra:
            raise ApiError(400, f"Unknown parameter: {sorted(extra)[0]}", code="parameter_unknown")
        options = content.get("embedding_option", ["visual", "audio", "transcription"] if kind == "video" else
                              ["audio", "transcription"])
        if "embedding_type" in content and (not isinstance(options, list) or len(options) < 2):
            raise ApiError(400, "embedding_type needs two or more embedding_option values", code="parameter_invalid")
        payload = content.get("media_source", {})
        if not task and isinstance(payload, dict) and len(str(payload.get("base64_string", ""))) > SYNC_BASE64:
            raise ApiError(400, "base64 media over 36 MB: use the tasks API", code="parameter_invalid")
        data = media_bytes(content, False, kind)
        start, end = content.get("start_sec", 0.0), content.get("end_sec")
        if not isinstance(start, (int, float)) or (end is not None and not isinstance(end, (int, float))):
            raise ApiError(400, "start_sec and end_sec must be numbers", code="parameter_invalid")
        cap = TASK_SECONDS if task else SYNC_SECONDS
        vector = media_vector(spec, kind, data, kind, cap, float(start), None if end is None else float(end))
        fused = kind == "video" and "fused_embedding" in content.get("embedding_type", [])
        option = "fused" if fused else (options[0] if isinstance(options, list) and options else None)
        return _entry(to_wire(vector), option, "asset", float(start), None if end is None else float(end))


def _entry(vector: list[float], option: str | None, scope: str | None, start: float | None,
           end: float | None) -> dict[str, Any]:
    return {"embedding": vector, "embedding_option": option, "embedding_scope": scope, "start_sec": start,
            "end_sec": end}
