"""The emulated Google Content endpoints: the Gemini API and Vertex ``gemini-embedding-2:embedContent``.

* Gemini API: ``POST /v1beta/models/{m}:embedContent`` (one ``EmbedContentRequest``) and
  ``…:batchEmbedContents`` (``{"requests": [...]}``, at most 100, each naming ``"model": "models/{m}"``); the
  key in ``x-goog-api-key`` (or ``?key=``). Vertex-only fields (``embedContentConfig``, ``autoTruncate``, …) and
  unknown fields are refused, as are MIME types other than PNG/JPEG images, PDF, MP4/MOV video and MP3/WAV audio,
  more than 6 images, a second PDF, video or audio, a PDF over 6 pages, video over 80 s with a sound track
  (120 s without) and audio over 80 s in one content.
* Vertex: ``POST /v1[beta1]/projects/{p}/locations/{l}/publishers/google/models/{m}:embedContent`` or the
  express path ``/v1[beta1]/publishers/google/models/{m}:embedContent`` (API key only). One ``content`` per call;
  ``instances`` and ``requests`` are refused; options in ``embedContentConfig`` (the deprecated top-level copies
  are accepted). The answer carries ``embedding.values``, ``usageMetadata`` and ``truncated``.

All parts of one content make **one** vector (the normalised mean of the parts'), as the real model aggregates
them. ``taskType`` is refused for gemini-embedding-2 (its tasks are prompt prefixes, which the fake space reads)
and ignored for the preview, as Google's own SDK test shows; gemini-embedding-001 takes it. Errors are
``google.rpc.Status`` JSON; a 429 says when to retry in ``RetryInfo`` (no ``Retry-After`` header). Image tokens
in ``usageMetadata`` follow Gemini's documented vision rule (258 per image up to 384 px, else per 768-px tile):
a guess, not gemini-embedding-2's own (unpublished) count.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, cast

import numpy as np
from PIL import Image

from .imagedata import ImageDataError, decode_base64, load_image
from .models import ModelSpec, find_model
from .space import Vector, count_tokens, embed_parts, part_vector
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["GeminiApi", "VertexGemini"]

GEMINI_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(embedContent|batchEmbedContents)$")
VERTEX_PATH = re.compile(
    r"^/(v1|v1beta1)/(?:projects/([^/]+)/locations/([^/]+)/)?publishers/google/models/([^/:]+):embedContent$"
)
MAX_REQUESTS = 100
MAX_IMAGES = 6
MAX_TOKENS = 8192
MIME_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG"}
# Media parts (PROVIDERS-NEXT 1a; the strictest figures where sources disagree).
MEDIA_TYPES = {
    "application/pdf": "pdf",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/mpeg": "video",
    "audio/mpeg": "audio",
    "audio/mp3": "audio",
    "audio/wav": "audio",
    "audio/x-wav": "audio",
}
MAX_PDF_PAGES = 6
MAX_VIDEO_SECONDS, MAX_VIDEO_SECONDS_WITH_AUDIO, MAX_AUDIO_SECONDS = 120.0, 80.0, 80.0
MAX_INLINE_BYTES = 20 * 1024 * 1024
VERTEX_ONLY = frozenset({"embedContentConfig", "autoTruncate", "documentOcr", "audioTrackExtraction", "mimeType"})
REQUEST_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
VERTEX_FIELDS = frozenset(
    {"content", "embedContentConfig", "title", "taskType", "outputDimensionality", "autoTruncate"}
)
CONFIG_FIELDS = frozenset(
    {"outputDimensionality", "autoTruncate", "documentOcr", "audioTrackExtraction", "taskType", "title"}
)
_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_INVALID_KEY = [{
    "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
    "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"},
}]
# proto3 JSON parsers take the snake_case field names too; a client should send lowerCamelCase.
_SNAKE = {
    "inline_data": "inlineData", "file_data": "fileData", "mime_type": "mimeType", "file_uri": "fileUri",
    "task_type": "taskType", "output_dimensionality": "outputDimensionality",
    "embed_content_config": "embedContentConfig", "auto_truncate": "autoTruncate",
}


def _camel(obj: dict[str, Any]) -> dict[str, Any]:
    return {_SNAKE.get(k, k): v for k, v in obj.items()}


def _unknown(name: str, where: str) -> ApiError:
    return ApiError(400, f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find field.')


def _image_tokens(image: Image.Image) -> int:
    width, height = image.size
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


class _Google(Endpoint):
    """Google's error shape: ``{"error": {code, message, status, details}}``; 429s carry RetryInfo."""

    retry_after_header: ClassVar[bool] = False
    service: ClassVar[str] = "generativelanguage.googleapis.com"

    def error(self, err: ApiError, request_id: str) -> Reply:
        details = list(err.details or [])
        if err.status == 429:
            details.append({
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": f"{self.service}/embed_content_requests",
                                "quotaId": "EmbedContentRequestsPerMinutePerProjectPerModel"}],
            })
            if err.retry_delay is not None:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": f"{err.retry_delay:g}s"})
        message = err.message
        if err.status == 429 and err.retry_delay is not None:
            message = f"{message} Please retry in {err.retry_delay:g}s."
        status = err.code or _STATUS.get(err.status, "UNKNOWN")
        return Reply.json(err.status, {"error": {"code": err.status, "message": message, "status": status,
                                                 "details": details}})

    # -- one Content ------------------------------------------------------------------------------------------
    def content_vector(
        self, spec: ModelSpec, content: object, where: str, query: bool
    ) -> tuple[Vector, dict[str, int]]:
        """The full-size vector of one ``content`` (mean of its parts) and its token counts by modality."""
        if not isinstance(content, dict):
            raise ApiError(400, f"{where} is required and must be an object")
        content = _camel(content)
        for key in content:
            if key not in ("parts", "role"):
                raise _unknown(key, where)
        if content.get("role", "user") not in ("user", ""):
            raise ApiError(400, f"{where}.role must be 'user'")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise ApiError(400, f"{where}.parts must be a non-empty list")
        vectors: list[Vector] = []
        tokens = {"TEXT": 0, "IMAGE": 0}
        images = 0
        media: set[str] = set()
        for i, part in enumerate(parts):
            at = f"{where}.parts[{i}]"
            if not isinstance(part, dict) or len(part) != 1:
                raise ApiError(400, f"{at} must hold exactly one of text, inlineData, fileData")
            ((key, value),) = _camel(part).items()
            if key == "text":
                if not isinstance(value, str):
                    raise ApiError(400, f"{at}.text must be a string")
                tokens["TEXT"] += count_tokens(value)
                vectors.append(part_vector(spec, text=value, query=query))
                continue
            if key not in ("inlineData", "fileData"):
                raise _unknown(key, at)
            if "image" not in spec.modalities:
                raise ApiError(400, f"{at}: {spec.name} accepts text only")
            kind = MEDIA_TYPES.get(str(_camel(value).get("mimeType") if isinstance(value, dict) else ""))
            if kind is not None:
                if kind in media:
                    raise ApiError(400, f"{where}: at most one {kind} per content")
                media.add(kind)
                vectors.append(self._media_part(spec, kind, key, value, f"{at}.{key}", query))
                tokens[kind.upper()] = tokens.get(kind.upper(), 0) + 258
                continue
            images += 1
            if images > MAX_IMAGES:
                raise ApiError(400, f"{where}: at most {MAX_IMAGES} images per content")
            picture, uri = self._media(key, value, f"{at}.{key}")
            if picture is not None:
                tokens["IMAGE"] += _image_tokens(picture)
                vectors.append(part_vector(spec, image=picture))
            else:
                tokens["IMAGE"] += 258
                vectors.append(part_vector(spec, uri=uri))
        return part_mean(vectors), tokens

    @staticmethod
    def _media_part(spec: ModelSpec, kind: str, key: str, value: object, at: str, query: bool) -> Vector:
        """A PDF, video or audio part, checked against the documented limits; its vector from what it shows.

        A PDF is the mean of its pages' texts (as documents) and page colours, so a query names the page it
        matches; a video is the image vector of its mean colour; audio (which the fake space cannot hear) a
        direction hashed from its bytes.
        """
        import hashlib

        from .media import MediaError, audio_info, pdf_info, video_colour, video_info

        payload = _payload(key, value, at)
        if key == "fileData":
            return part_vector(spec, uri=payload)
        try:
            data = decode_base64(payload)
        except ImageDataError as exc:
            raise ApiError(400, str(exc)) from None
        if len(data) > MAX_INLINE_BYTES:
            raise ApiError(400, f"{at}: inline data is {len(data)} bytes; the limit is {MAX_INLINE_BYTES}")
        try:
            if kind == "pdf":
                info = pdf_info(data)
                if info.page_count > MAX_PDF_PAGES:
                    raise ApiError(400, f"{at}: the PDF has {info.page_count} pages; at most {MAX_PDF_PAGES}")
                texts = [t for t in info.texts if t.strip()] or ["(blank page)"]
                return part_mean([part_vector(spec, text=t, query=query) for t in texts])
            if kind == "video":
                vinfo = video_info(data)
                cap = MAX_VIDEO_SECONDS_WITH_AUDIO if vinfo.has_audio else MAX_VIDEO_SECONDS
                if vinfo.duration > cap:
                    raise ApiError(400, f"{at}: the video is {vinfo.duration:.1f} s; at most {cap:g} s")
                return part_vector(spec, image=Image.new("RGB", (32, 32), video_colour(data)))
            ainfo = audio_info(data)
            if ainfo.duration > MAX_AUDIO_SECONDS:
                raise ApiError(400, f"{at}: the audio is {ainfo.duration:.1f} s; at most {MAX_AUDIO_SECONDS:g} s")
            return part_vector(spec, uri="audio:" + hashlib.sha256(data).hexdigest())
        except MediaError as exc:
            raise ApiError(400, f"{at}: unable to process the {kind}: {exc}") from None

    @staticmethod
    def _media(key: str, value: object, at: str) -> tuple[Image.Image | None, str | None]:
        payload = _payload(key, value, at)
        mime = _camel(cast("dict[str, Any]", value)).get("mimeType")
        if mime not in MIME_FORMATS:
            raise ApiError(400, f"{at}.mimeType {mime!r} is not supported; use one of {', '.join(MIME_FORMATS)}")
        if key == "fileData":
            return None, payload
        try:
            data = decode_base64(payload)
            if len(data) > MAX_INLINE_BYTES:
                raise ImageDataError(f"inline data is {len(data)} bytes; the limit is {MAX_INLINE_BYTES}")
            picture = load_image(data, frozenset({MIME_FORMATS[mime]}), at)
        except ImageDataError as exc:
            raise ApiError(400, f"Unable to process input image. {exc}") from None
        return picture, None

    @staticmethod
    def dimensions(value: object, spec: ModelSpec, where: str) -> int | None:
        if value is None:
            return None
        allowed = spec.dimensions or ()
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise ApiError(400, f"{where}: outputDimensionality must be an integer from 128 to {spec.dim}, "
                                f"got {value!r}")
        return value

    @staticmethod
    def task(spec: ModelSpec, task_type: object, title: object, where: str) -> bool:
        """Check ``taskType``/``title`` for ``spec``; whether they mark a query."""
        if task_type is None and title is None:
            return False
        if spec.prompt_tasks:
            if spec.name.endswith("-preview"):
                return False  # accepted and ignored, as Google's SDK test shows
            raise ApiError(400, f"{where}: {spec.name} does not support taskType or title; put the task in the "
                                "prompt ('task: search result | query: ...')")
        if task_type is not None and task_type not in spec.tasks:
            raise ApiError(400, f"{where}.taskType: invalid value {task_type!r}")
        if title is not None and task_type != "RETRIEVAL_DOCUMENT":
            raise ApiError(400, "Unable to submit request because the model does not support the title parameter "
                                "unless the task_type is RETRIEVAL_DOCUMENT")
        return spec.is_query(task_type if isinstance(task_type, str) else None)


def part_mean(vectors: list[Vector]) -> Vector:
    """The aggregate of a content's parts (one vector per content, however many parts): their mean."""
    total: Vector = np.mean(np.stack(vectors), axis=0)
    return total


class GeminiApi(_Google):
    """The Gemini Developer API's embedding methods (``generativelanguage.googleapis.com``)."""

    provider: ClassVar[str] = "gemini"

    def matches(self, path: str) -> bool:
        return GEMINI_PATH.match(path) is not None

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
            raise ApiError(400, "API key not valid. Please pass a valid API key.", details=_INVALID_KEY)
        match = GEMINI_PATH.match(req.path)
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
                raise _unknown(field, "")
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
        request = _camel(request)
        for field in request:
            if field in VERTEX_ONLY:
                raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{field}\" at '{where}': "
                                    "Cannot find field. (It is a Vertex AI parameter, not a Gemini API one.)")
            if field not in REQUEST_FIELDS:
                raise _unknown(field, where)
        model = request.get("model")
        if (required_model or model is not None) and model != f"models/{spec.name}":
            raise ApiError(400, f"* BatchEmbedContentsRequest.{where}.model: the model in the request ({model!r}) "
                                f"must match the model in the URL ('models/{spec.name}')")
        query = self.task(spec, request.get("taskType"), request.get("title"), where)
        dims = self.dimensions(request.get("outputDimensionality"), spec, where)
        vector, _ = self.content_vector(spec, request.get("content"), f"{where}.content".lstrip("."), query)
        return embed_parts(spec, [vector], dims)


class VertexGemini(_Google):
    """Vertex AI's ``:embedContent`` for Gemini embedding models (one content per call)."""

    provider: ClassVar[str] = "vertex"
    service: ClassVar[str] = "aiplatform.googleapis.com"

    def matches(self, path: str) -> bool:
        return VERTEX_PATH.match(path) is not None

    def drop_one(self, payload: Any) -> Any:
        return {k: v for k, v in payload.items() if k != "embedding"}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        match = VERTEX_PATH.match(req.path)
        if match is None:
            raise ApiError(404, "Not Found")
        _, project, _, name = match.groups()
        key = req.headers.get("x-goog-api-key") or (req.query.get("key") or [""])[0]
        token = bearer(req.headers)
        if key:
            if not settings.accepts(key):
                raise ApiError(400, "API key not valid. Please pass a valid API key.", details=_INVALID_KEY)
        elif token:
            if project is None:
                raise ApiError(401, "Express mode takes an API key; an OAuth token needs the projects/... path")
            if not settings.accepts(token):
                raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                    "login cookie or other valid authentication credential.")
        else:
            raise ApiError(401, "Method doesn't allow unregistered callers (callers without established identity). "
                                "Please use API Key or other form of API consumer identity to call this API.")
        spec = find_model("vertex", name)
        if spec is None or not spec.embed_content:
            raise ApiError(400, f"Publisher model {name!r} does not support embedContent"
                                + ("; use :predict" if spec is not None else ""))
        if req.body_error is not None:
            raise ApiError(400, f"Invalid JSON payload received. {req.body_error}")
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        body = _camel(body)
        for field in body:
            if field in ("instances", "requests"):
                raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{field}\": embedContent takes "
                                    "one 'content' (there is no batch method for this model)")
            if field not in VERTEX_FIELDS:
                raise _unknown(field, "")
        config = body.get("embedContentConfig", {})
        if not isinstance(config, dict):
            raise ApiError(400, "embedContentConfig must be an object")
        config = _camel(config)
        for field in config:
            if field not in CONFIG_FIELDS:
                raise _unknown(field, "embed_content_config")
        deprecated = ("title", "taskType", "outputDimensionality", "autoTruncate")  # top-level copies, still taken
        merged: dict[str, Any] = {k: body[k] for k in deprecated if k in body}
        merged.update(config)
        query = self.task(spec, merged.get("taskType"), merged.get("title"), "embedContentConfig")
        dims = self.dimensions(merged.get("outputDimensionality"), spec, "embedContentConfig")
        auto_truncate = merged.get("autoTruncate", True)
        content = body.get("content")
        truncated = False
        if isinstance(content, dict):
            content, truncated = self._truncate(content, bool(auto_truncate))
        vector, tokens = self.content_vector(spec, content, "content", query)
        details = [{"modality": m, "tokenCount": n} for m, n in tokens.items() if n]
        usage = {"promptTokenCount": sum(tokens.values()), "promptTokensDetails": details}
        return Reply.json(200, {"embedding": {"values": embed_parts(spec, [vector], dims)},
                                "usageMetadata": usage, "truncated": truncated})

    @staticmethod
    def _truncate(content: dict[str, Any], auto: bool) -> tuple[dict[str, Any], bool]:
        """Texts over the token limit are cut (``truncated: true``), or refused when ``autoTruncate`` is false."""
        parts = content.get("parts")
        if not isinstance(parts, list):
            return content, False
        total = sum(count_tokens(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
        if total <= MAX_TOKENS:
            return content, False
        if not auto:
            raise ApiError(400, f"The input token count ({total}) exceeds the maximum number of tokens allowed "
                                f"({MAX_TOKENS}).")
        cut = []
        for p in parts:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                p = {**p, "text": " ".join(p["text"].split()[: MAX_TOKENS // 2])}
            cut.append(p)
        return {**content, "parts": cut}, True


def _payload(key: str, value: object, at: str) -> str:
    """An ``inlineData`` / ``fileData`` part's payload (base64 data, or a file URI checked for its form)."""
    if not isinstance(value, dict):
        raise ApiError(400, f"{at} must be an object")
    value = _camel(value)
    field = "data" if key == "inlineData" else "fileUri"
    for name in value:
        if name not in ("mimeType", field):
            raise _unknown(name, at)
    payload = value.get(field)
    if not isinstance(payload, str) or not payload:
        raise ApiError(400, f"{at}.{field} is required")
    if key == "fileData" and not payload.startswith(
        ("gs://", "https://generativelanguage.googleapis.com/v1beta/files/", "files/")
    ):
        raise ApiError(400, f"{at}.fileUri {payload[:100]!r} is not a gs:// or Files API URI")
    return payload
