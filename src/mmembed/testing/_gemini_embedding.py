"""The emulated gemini-embedding family's wire, shared by every host that serves it: one ``Content`` per vector.

A ``Content`` is ``{"parts": [{"text"} | {"inlineData": {mimeType, data}} | {"fileData": {mimeType, fileUri}}]}``
(lowerCamelCase; proto3 JSON parsers take snake_case too). Its host checks refuse MIME types other than PNG/JPEG
images, PDF, MP4/MOV video and MP3/WAV audio, more than 6 images, a second PDF, video or audio, a PDF over 6
pages, video over 80 s with a sound track (120 s without) and audio over 80 s in one content. All parts of one
content make **one** vector (the normalised mean of the parts'), as the real model aggregates them. ``taskType``
is refused for gemini-embedding-2 (its tasks are prompt prefixes, which the fake space reads) and ignored for the
preview, as Google's own SDK test shows; gemini-embedding-001 takes it. Errors are ``google.rpc.Status`` JSON; a
429 says when to retry in ``RetryInfo`` (no ``Retry-After`` header). Image tokens in ``usageMetadata`` follow
Gemini's documented vision rule (258 per image up to 384 px, else per 768-px tile): a guess, not
gemini-embedding-2's own (unpublished) count. The host endpoints (one per API) subclass :class:`ContentEndpoint`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, cast

import numpy as np
from PIL import Image

from .imagedata import ImageDataError, decode_base64, load_image
from .models import ModelSpec
from .space import Vector, count_tokens, part_vector
from .wire import ApiError, Endpoint, Reply

__all__ = ["INVALID_KEY", "ContentEndpoint", "camel", "family_rows", "part_mean", "unknown_field"]

MAX_IMAGES = 6
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
_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
INVALID_KEY = [{
    "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
    "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"},
}]
# proto3 JSON parsers take the snake_case field names too; a client should send lowerCamelCase.
_SNAKE = {
    "inline_data": "inlineData", "file_data": "fileData", "mime_type": "mimeType", "file_uri": "fileUri",
    "task_type": "taskType", "output_dimensionality": "outputDimensionality",
    "embed_content_config": "embedContentConfig", "auto_truncate": "autoTruncate",
}


def camel(obj: dict[str, Any]) -> dict[str, Any]:
    return {_SNAKE.get(k, k): v for k, v in obj.items()}


def unknown_field(name: str, where: str) -> ApiError:
    return ApiError(400, f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find field.')


def family_rows(provider: str, max_inputs: int) -> tuple[ModelSpec, ...]:
    """The multimodal models' rows at one host (one space across hosts: the same model), ``max_inputs`` a call."""
    return tuple(
        ModelSpec(provider, name, name, 3072, frozenset({"text", "image"}), dimensions=range(128, 3073),
                  max_inputs=max_inputs, modality_weight=0.6, embed_content=True, prompt_tasks=True)
        for name in ("gemini-embedding-2", "gemini-embedding-2-preview")
    )


def _image_tokens(image: Image.Image) -> int:
    width, height = image.size
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


class ContentEndpoint(Endpoint):
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
        content = camel(content)
        for key in content:
            if key not in ("parts", "role"):
                raise unknown_field(key, where)
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
            ((key, value),) = camel(part).items()
            if key == "text":
                if not isinstance(value, str):
                    raise ApiError(400, f"{at}.text must be a string")
                tokens["TEXT"] += count_tokens(value)
                vectors.append(part_vector(spec, text=value, query=query))
                continue
            if key not in ("inlineData", "fileData"):
                raise unknown_field(key, at)
            if "image" not in spec.modalities:
                raise ApiError(400, f"{at}: {spec.name} accepts text only")
            kind = MEDIA_TYPES.get(str(camel(value).get("mimeType") if isinstance(value, dict) else ""))
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
        mime = camel(cast("dict[str, Any]", value)).get("mimeType")
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


def _payload(key: str, value: object, at: str) -> str:
    """An ``inlineData`` / ``fileData`` part's payload (base64 data, or a file URI checked for its form)."""
    if not isinstance(value, dict):
        raise ApiError(400, f"{at} must be an object")
    value = camel(value)
    field = "data" if key == "inlineData" else "fileUri"
    for name in value:
        if name not in ("mimeType", field):
            raise unknown_field(name, at)
    payload = value.get(field)
    if not isinstance(payload, str) or not payload:
        raise ApiError(400, f"{at}.{field} is required")
    if key == "fileData" and not payload.startswith(
        ("gs://", "https://generativelanguage.googleapis.com/v1beta/files/", "files/")
    ):
        raise ApiError(400, f"{at}.fileUri {payload[:100]!r} is not a gs:// or Files API URI")
    return payload
