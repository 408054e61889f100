"""The emulated Vertex AI endpoints: ``multimodalembedding@001:predict`` and the Content family's ``:embedContent``.

* ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:predict``: one instance per request.
* ``POST /v1[beta1]/projects/{p}/locations/{l}/publishers/google/models/{m}:embedContent`` or the express path
  ``/v1[beta1]/publishers/google/models/{m}:embedContent`` (API key only). One ``content`` per call;
  ``instances`` and ``requests`` are refused; options in ``embedContentConfig`` (the deprecated top-level copies
  are accepted). The answer carries ``embedding.values``, ``usageMetadata`` and ``truncated``. The Content
  checks are the family's (:mod:`mmembed.testing._gemini_embedding`).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from ..providers.vertex import location_host
from ._gemini_embedding import INVALID_KEY, ContentEndpoint, camel, family_rows, unknown_field
from .imagedata import ImageDataError, decode_base64, load_image
from .models import ModelSpec, find_model
from .space import count_tokens, embed, embed_parts
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["Vertex", "VertexGemini"]

PATH = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):predict$")
CONTENT_PATH = re.compile(
    r"^/(v1|v1beta1)/(?:projects/([^/]+)/locations/([^/]+)/)?publishers/google/models/([^/:]+):embedContent$"
)
MAX_TOKENS = 8192  # of an :embedContent content's texts
CONTENT_FIELDS = frozenset(
    {"content", "embedContentConfig", "title", "taskType", "outputDimensionality", "autoTruncate"}
)
CONFIG_FIELDS = frozenset(
    {"outputDimensionality", "autoTruncate", "documentOcr", "audioTrackExtraction", "taskType", "title"}
)
# @001 keeps only about the first 32 tokens of a text.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("vertex", "multimodalembedding@001", "vertex-multimodal", 1408, frozenset({"text", "image"}),
              dimensions=(128, 256, 512, 1408), max_inputs=1, aliases=("multimodalembedding",), text_tokens=32),
)
IMAGE_FORMATS = frozenset({"BMP", "GIF", "JPEG", "PNG"})
MIME_TYPES = frozenset({"image/bmp", "image/gif", "image/jpeg", "image/png"})
MAX_IMAGE_BYTES = 20 * 1024 * 1024
INSTANCE_KEYS = frozenset({"text", "image", "video"})
VIDEO_KEYS = frozenset({"bytesBase64Encoded", "gcsUri", "videoSegmentConfig"})
SEGMENT_KEYS = frozenset({"startOffsetSec", "endOffsetSec", "intervalSec"})
VIDEO_WINDOW = 120  # seconds of video one request may cover
MIN_INTERVAL = 4
MAX_VIDEO_BYTES = 20 * 1024 * 1024  # inline video (the real cap is undocumented; GCS for anything large)
_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_INVALID_KEY_DETAILS = [{
    "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
}]


def _unknown_field(name: str, where: str) -> ApiError:
    return ApiError(400, f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find field.')


class Vertex(Endpoint):
    """``{instances: [{text?, image?}], parameters: {dimension}}`` → ``{predictions, deployedModelId}``.

    As Google does, an API key that is not accepted gets 400 INVALID_ARGUMENT (reason ``API_KEY_INVALID``),
    while a refused OAuth token, or no credential at all, gets 401 UNAUTHENTICATED.
    """

    provider: ClassVar[str] = "vertex"
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def matches(self, path: str) -> bool:
        return PATH.match(path) is not None

    def real_host(self, path: str) -> str | None:
        return _real_host(PATH.match(path), 2)

    def error(self, err: ApiError, request_id: str) -> Reply:
        status = err.code or _STATUS.get(err.status, "UNKNOWN")
        error: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
        if err.details:
            error["details"] = err.details
        return Reply.json(err.status, {"error": error})

    def drop_one(self, payload: Any) -> Any:
        return {**payload, "predictions": payload["predictions"][:-1]}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        _authenticate(req, settings, _INVALID_KEY_DETAILS)
        match = PATH.match(req.path)
        name = match.group(3) if match else ""
        spec = find_model("vertex", name)
        if spec is not None and spec.embed_content:
            raise ApiError(400, f"Publisher model {name!r} does not support predict; use :embedContent")
        if spec is None:
            raise ApiError(400, f"Publisher model {name!r} is not supported; use multimodalembedding@001")
        if req.body_error is not None:
            raise ApiError(400, f"Invalid JSON payload received. {req.body_error}")
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise ApiError(400, "'instances' must be a non-empty list")
        if len(instances) > spec.max_inputs:
            raise ApiError(400, f"Only {spec.max_inputs} instance is allowed per request; got {len(instances)}.")
        dimension = self._dimension(body.get("parameters"), spec.dimensions or ())
        prediction: dict[str, list[float]] = {}
        instance = instances[0]
        if not isinstance(instance, dict):
            raise ApiError(400, "instances[0] must be an object")
        for key in instance:
            if key not in INSTANCE_KEYS:
                raise _unknown_field(key, "instances[0]")
        if not INSTANCE_KEYS & set(instance):
            raise ApiError(400, "Empty instances.")
        if "video" in instance and "image" in instance:
            raise ApiError(400, "instances[0] takes an image or a video, not both")
        if "text" in instance:
            if not isinstance(instance["text"], str):
                raise ApiError(400, "instances[0].text must be a string")
            prediction["textEmbedding"] = embed(spec, text=instance["text"], dimensions=dimension)
        if "image" in instance:
            prediction["imageEmbedding"] = self._image(spec, instance["image"], dimension)
        result: dict[str, Any] = dict(prediction)
        if "video" in instance:
            result["videoEmbeddings"] = self._video(spec, instance["video"])
        return Reply.json(200, {"predictions": [result], "deployedModelId": "emulator"})

    @staticmethod
    def _video(spec: ModelSpec, video: object) -> list[dict[str, Any]]:
        """One 1408-d vector per interval (``parameters.dimension`` does not apply to video), as Vertex does.

        A segment's vector is the image vector of the segment's mean colour, so a red video lands near "red".
        """
        if not isinstance(video, dict):
            raise ApiError(400, "instances[0].video must be an object")
        for key in video:
            if key not in VIDEO_KEYS:
                raise _unknown_field(key, "instances[0].video")
        if ("bytesBase64Encoded" in video) == ("gcsUri" in video):
            raise ApiError(400, "instances[0].video needs exactly one of bytesBase64Encoded and gcsUri")
        config = video.get("videoSegmentConfig", {})
        if not isinstance(config, dict):
            raise ApiError(400, "videoSegmentConfig must be an object")
        for key, value in config.items():
            if key not in SEGMENT_KEYS:
                raise _unknown_field(key, "instances[0].video.videoSegmentConfig")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ApiError(400, f"videoSegmentConfig.{key} must be a non-negative integer of seconds")
        data: bytes | None = None
        if "gcsUri" in video:
            uri = video["gcsUri"]
            if not isinstance(uri, str) or not uri.startswith("gs://") or len(uri) <= len("gs://"):
                raise ApiError(400, f"Invalid gcsUri {uri!r}; expected gs://bucket/object (http(s) URLs are refused)")
            duration = float(VIDEO_WINDOW)
        else:
            encoded = video["bytesBase64Encoded"]
            try:
                data = decode_base64(encoded) if isinstance(encoded, str) else b""
            except ImageDataError as exc:
                raise ApiError(400, str(exc)) from None
            if not data or len(data) > MAX_VIDEO_BYTES:
                raise ApiError(400, f"inline video must be 1 to {MAX_VIDEO_BYTES} bytes")
            duration = _video_duration(data)
        start = config.get("startOffsetSec", 0)
        end = config.get("endOffsetSec", min(start + VIDEO_WINDOW, math.ceil(duration)))
        interval = config.get("intervalSec", 16)
        if interval < MIN_INTERVAL:
            raise ApiError(400, f"videoSegmentConfig.intervalSec must be at least {MIN_INTERVAL}; got {interval}")
        if end <= start:
            raise ApiError(400, "videoSegmentConfig.endOffsetSec must be after startOffsetSec")
        if end - start > VIDEO_WINDOW:
            raise ApiError(400, f"a request covers at most {VIDEO_WINDOW} s of video; got {end - start} s")
        if start >= duration:
            raise ApiError(400, f"startOffsetSec {start} is past the video's end ({duration:.1f} s)")
        end = min(end, math.ceil(duration))
        segments = []
        for a in range(start, end, interval):
            b = min(a + interval, end)
            vector = _segment_vector(spec, data, video.get("gcsUri"), a, b)
            segments.append({"startOffsetSec": a, "endOffsetSec": b, "embedding": vector})
        return segments

    @staticmethod
    def _dimension(parameters: object, allowed: tuple[int, ...] | range) -> int:
        if parameters is None:
            return 1408
        if not isinstance(parameters, dict):
            raise ApiError(400, "'parameters' must be an object")
        value = parameters.get("dimension", 1408)
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            options = ", ".join(str(d) for d in allowed)
            raise ApiError(400, f"Invalid dimension {value!r}: it must be one of {options}.")
        return value

    @staticmethod
    def _image(spec: ModelSpec, image: object, dimension: int) -> list[float]:
        if not isinstance(image, dict):
            raise ApiError(400, "instances[0].image must be an object")
        for key in image:
            if key not in ("bytesBase64Encoded", "gcsUri", "mimeType"):
                raise _unknown_field(key, "instances[0].image")
        mime = image.get("mimeType")
        if mime is not None and mime not in MIME_TYPES:
            raise ApiError(400, f"Unsupported mimeType {mime!r}; use one of {', '.join(sorted(MIME_TYPES))}")
        if ("bytesBase64Encoded" in image) == ("gcsUri" in image):
            raise ApiError(400, "instances[0].image needs exactly one of bytesBase64Encoded and gcsUri")
        if "gcsUri" in image:
            uri = image["gcsUri"]
            if not isinstance(uri, str) or not uri.startswith("gs://") or len(uri) <= len("gs://"):
                raise ApiError(400, f"Invalid gcsUri {uri!r}; expected gs://bucket/object")
            return embed(spec, gcs_uri=uri, dimensions=dimension)
        encoded = image["bytesBase64Encoded"]
        if not isinstance(encoded, str):
            raise ApiError(400, "bytesBase64Encoded must be a string")
        try:
            data = decode_base64(encoded)
            if len(data) > MAX_IMAGE_BYTES:
                raise ImageDataError(f"image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}")
            picture = load_image(data, IMAGE_FORMATS, "instances[0].image")
        except ImageDataError as exc:
            raise ApiError(400, str(exc)) from None
        return embed(spec, image=picture, dimensions=dimension)


class VertexGemini(ContentEndpoint):
    """Vertex AI's ``:embedContent`` for the Content family's models (one content per call)."""

    provider: ClassVar[str] = "vertex"
    models: ClassVar[tuple[ModelSpec, ...]] = family_rows("vertex", max_inputs=1)  # no batch method here
    service: ClassVar[str] = "aiplatform.googleapis.com"

    def matches(self, path: str) -> bool:
        return CONTENT_PATH.match(path) is not None

    def real_host(self, path: str) -> str | None:
        return _real_host(CONTENT_PATH.match(path), 3)

    def drop_one(self, payload: Any) -> Any:
        return {k: v for k, v in payload.items() if k != "embedding"}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        match = CONTENT_PATH.match(req.path)
        if match is None:
            raise ApiError(404, "Not Found")
        _, project, _, name = match.groups()
        _authenticate(req, settings, INVALID_KEY, express=project is None)
        spec = find_model("vertex", name)
        if spec is None or not spec.embed_content:
            raise ApiError(400, f"Publisher model {name!r} does not support embedContent"
                                + ("; use :predict" if spec is not None else ""))
        if req.body_error is not None:
            raise ApiError(400, f"Invalid JSON payload received. {req.body_error}")
        body = req.json
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        body = camel(body)
        for field in body:
            if field in ("instances", "requests"):
                raise ApiError(400, f"Invalid JSON payload received. Unknown name \"{field}\": embedContent takes "
                                    "one 'content' (there is no batch method for this model)")
            if field not in CONTENT_FIELDS:
                raise unknown_field(field, "")
        config = body.get("embedContentConfig", {})
        if not isinstance(config, dict):
            raise ApiError(400, "embedContentConfig must be an object")
        config = camel(config)
        for field in config:
            if field not in CONFIG_FIELDS:
                raise unknown_field(field, "embed_content_config")
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


def _authenticate(
    req: Incoming, settings: Settings, invalid_key: list[dict[str, Any]], *, express: bool = False
) -> None:
    """As Google does: a key that is not accepted gets 400 INVALID_ARGUMENT (reason ``API_KEY_INVALID``), a refused
    OAuth token, or no credential at all, 401 UNAUTHENTICATED; the express path takes keys only."""
    key = req.headers.get("x-goog-api-key") or (req.query.get("key") or [""])[0]
    token = bearer(req.headers)
    if key:
        if not settings.accepts(key):
            raise ApiError(400, "API key not valid. Please pass a valid API key.", details=invalid_key)
    elif token:
        if express:
            raise ApiError(401, "Express mode takes an API key; an OAuth token needs the projects/... path")
        if not settings.accepts(token):
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential.")
    else:
        raise ApiError(401, "Method doesn't allow unregistered callers (callers without established identity). "
                            "Please use API Key or other form of API consumer identity to call this API.")


def _real_host(match: re.Match[str] | None, group: int) -> str | None:
    """The host of the location in a path (the express path, which names none, goes to ``global``)."""
    if match is None:
        return None
    return f"https://{location_host(match.group(group) or 'global')}"


def _video_duration(data: bytes) -> float:
    from .media import MediaError, video_info

    try:
        return video_info(data).duration
    except (MediaError, ImportError) as exc:
        raise ApiError(400, f"instances[0].video is not a readable video: {exc}") from None


def _segment_vector(spec: ModelSpec, data: bytes | None, gcs_uri: object, start: int, end: int) -> list[float]:
    from PIL import Image

    from .media import MediaError, video_colour

    if data is None:
        return embed(spec, gcs_uri=f"{gcs_uri}#t={start},{end}")
    try:
        colour = video_colour(data, float(start), float(end))
    except MediaError:
        colour = video_colour(data, 0.0, None)
    return embed(spec, image=Image.new("RGB", (32, 32), colour))
