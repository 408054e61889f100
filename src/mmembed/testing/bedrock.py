"""The emulated Amazon Bedrock runtime: ``POST /model/{modelId}/invoke`` for the multimodal embedding models.

Strict where the real service is: every request must carry a valid SigV4 signature for the service ``bedrock``
in the emulator's region, computed here independently of any client library — signed headers including
``host`` and ``x-amz-date``, a timestamp within five minutes, the canonical URI being the sent path encoded
once more (``%3A`` → ``%253A``), the body hash — and, when the test credentials carry a session token, an
``X-Amz-Security-Token`` equal to it. A Bedrock API key (``Authorization: Bearer``) is accepted when it is one
the emulator knows. Failures answer 403 in Bedrock's shape: ``{"message"}`` with the error type in
``x-amzn-ErrorType`` (``InvalidSignatureException``, ``UnrecognizedClientException``,
``MissingAuthenticationTokenException``, ``IncompleteSignatureException``).

The model id is one percent-encoded path segment; unknown ids answer 400 "The provided model identifier is
invalid.", Marengo 2.7 by its base id 400 (it needs an inference profile). Bodies are checked per model (unknown
keys refused, exactly one input, documented values and limits); 429s are ``ThrottlingException`` without
``Retry-After``.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ._cohere_v4 import CLOUD_ID as _EMBED_V4
from ._cohere_v4 import SPACE as _EMBED_V4_SPACE
from ._cohere_v4 import items, vector
from .clips import media_vector
from .imagedata import ImageDataError, decode_base64, load_image
from .marengo import CLOUD_27 as _M27
from .marengo import CLOUD_30 as _M30
from .marengo import TEXT_IMAGE, marengo_vector
from .models import ModelSpec, find_model
from .space import get_space, to_wire, truncate
from .wire import ApiError, Endpoint, Incoming, Reply, Settings, bearer

__all__ = ["TEST_CREDENTIALS", "BedrockRuntime", "Credentials", "verify_sigv4"]

_NOVA, _TITAN = "amazon.nova-2-multimodal-embeddings-v1:0", "amazon.titan-embed-image-v1"
PURPOSES = frozenset(
    {"GENERIC_INDEX", "GENERIC_RETRIEVAL", "TEXT_RETRIEVAL", "IMAGE_RETRIEVAL", "VIDEO_RETRIEVAL",
     "DOCUMENT_RETRIEVAL", "AUDIO_RETRIEVAL", "CLASSIFICATION", "CLUSTERING"}
)
QUERY_PURPOSES = frozenset(p for p in PURPOSES if p.endswith("_RETRIEVAL"))
_ALL = frozenset({"text", "image", "video", "audio"})
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("bedrock", _NOVA, "nova-mme", 3072, _ALL, PURPOSES, QUERY_PURPOSES, (256, 384, 1024, 3072),
              modality_weight=0.8),
    ModelSpec("bedrock", _TITAN, "titan-mm-g1", 1024, TEXT_IMAGE, dimensions=(256, 384, 1024)),
    ModelSpec("bedrock", _M30, "marengo-3.0", 512, TEXT_IMAGE, modality_weight=1.0),
    ModelSpec("bedrock", _M27, "marengo-2.7", 1024, TEXT_IMAGE, modality_weight=1.0),
    ModelSpec("bedrock", _EMBED_V4, _EMBED_V4_SPACE, 1536, TEXT_IMAGE, frozenset(
        {"search_document", "search_query", "classification", "clustering"}), frozenset({"search_query"}),
        dimensions=(256, 512, 1024, 1536), max_inputs=96, modality_weight=1.0),
)
PROFILES = ("us.", "eu.", "apac.", "global.")
MAX_BODY = 25_000_000
SKEW = 300.0  # seconds a signature's timestamp may be off
NOVA_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}
NOVA_MEDIA = {"audio": {"mp3", "wav", "ogg"},
              "video": {"mp4", "mov", "mkv", "webm", "flv", "mpeg", "mpg", "wmv", "3gp"}}
NOVA_SECONDS = 30.0


@dataclass(frozen=True)
class Credentials:
    """The AWS credentials the emulator accepts (test values, never real ones)."""

    access_key: str
    secret_key: str
    session_token: str | None = None


TEST_CREDENTIALS = Credentials("AKIAEMULATOR7EXAMPLE", "emulator/Secret+Key/7f3a9c1e0b5d", "emulator-session-token")


def verify_sigv4(req: Incoming, region: str, creds: Credentials, now: float | None = None) -> None:
    """Check ``req``'s SigV4 signature for ``bedrock`` in ``region``; raise ApiError(403, ...) when it fails."""
    auth = req.headers.get("authorization", "")
    if not auth:
        raise ApiError(403, "Missing Authentication Token", code="MissingAuthenticationTokenException")
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request, ?"
        r"SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})",
        auth.strip(),
    )
    if match is None:
        raise ApiError(403, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.",
                       code="IncompleteSignatureException")
    key_id, day, scope_region, service, signed, signature = match.groups()
    token = req.headers.get("x-amz-security-token")
    if key_id != creds.access_key or token != creds.session_token:
        raise ApiError(403, "The security token included in the request is invalid.",
                       code="UnrecognizedClientException")
    if scope_region != region or service != "bedrock":
        raise _bad_signature(f"Credential should be scoped to a valid region ('{region}') and service ('bedrock').")
    amz_date = req.headers.get("x-amz-date", "")
    try:
        stamp = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise _bad_signature("X-Amz-Date is missing or malformed.") from None
    if abs((time.time() if now is None else now) - stamp) > SKEW:
        raise _bad_signature(f"Signature expired: {amz_date} is now earlier or later than the allowed 5 minutes.")
    names = signed.split(";")
    required = {"host", "x-amz-date"} | ({"x-amz-security-token"} if token else set())
    if day != amz_date[:8] or not required <= set(names) or names != sorted(names):
        raise _bad_signature("The signed headers or the credential date do not match the request.")
    expected = _signature(req, names, amz_date, f"{day}/{region}/bedrock/aws4_request", creds.secret_key)
    if expected is None or not hmac.compare_digest(expected, signature):
        raise _bad_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details."
        )


def _signature(req: Incoming, names: list[str], amz_date: str, scope: str, secret: str) -> str | None:
    lines = []
    for name in names:
        value = req.headers.get(name)
        if value is None:
            return None
        lines.append(f"{name}:{' '.join(value.split())}")
    payload = hashlib.sha256(req.body).hexdigest()
    if req.headers.get("x-amz-content-sha256", payload) != payload:
        return None
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, values in sorted(req.query.items()) for v in sorted(values)
    )
    uri = urllib.parse.quote(req.raw_path or req.path, safe="/~")  # non-S3: the sent path, encoded once more
    canonical = "\n".join([req.method, uri, query, "\n".join(lines) + "\n", ";".join(names), payload])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _bad_signature(message: str) -> ApiError:
    return ApiError(403, message, code="InvalidSignatureException")


_CODES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
          405: "UnknownOperationException", 413: "ValidationException", 429: "ThrottlingException",
          503: "ServiceUnavailableException"}


class BedrockRuntime(Endpoint):
    """``POST /model/{modelId}/invoke`` → the model's own JSON answer, for SigV4-signed (or API-key) requests."""

    provider: ClassVar[str] = "bedrock"
    retry_after_header: ClassVar[bool] = False  # Bedrock's throttling answers carry no Retry-After
    models: ClassVar[tuple[ModelSpec, ...]] = MODELS

    def __init__(
        self, region: str = "us-east-1", credentials: Credentials = TEST_CREDENTIALS, image_url_form: str = "object"
    ) -> None:
        self.region = region
        self.credentials = credentials
        # embed-v4's image_url inside inputs: an object {"url"} or a bare string (Bedrock's doc pages disagree)
        self.image_url_form = image_url_form

    def matches(self, path: str) -> bool:
        return path.startswith("/model/") and path.endswith("/invoke")

    def error(self, err: ApiError, request_id: str) -> Reply:
        code = err.code or _CODES.get(err.status, "InternalServerException")
        headers = (("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
                   ("x-amzn-RequestId", request_id))
        return Reply.json(err.status, {"message": err.message}, headers)

    def drop_one(self, payload: Any) -> Any:
        if isinstance(payload.get("embeddings"), dict):
            return {**payload, "embeddings": {k: v[:-1] for k, v in payload["embeddings"].items()}}
        return {key: value for key, value in payload.items() if key not in ("embedding", "embeddings", "data")}

    def handle(self, req: Incoming, settings: Settings) -> Reply:
        token = bearer(req.headers)
        if token is not None:
            if not settings.accepts(token):
                raise ApiError(403, "Invalid API Key format: Must start with pre-defined prefix",
                               code="UnrecognizedClientException")
        else:
            verify_sigv4(req, self.region, self.credentials)
        model = self._model(req)
        if len(req.body) > MAX_BODY:
            raise ApiError(400, f"Input is too long for the model: {len(req.body)} bytes, over {MAX_BODY}")
        if req.content_type not in ("", "application/json"):
            raise ApiError(400, f"Content-Type {req.content_type} is not supported; use application/json")
        body = req.json
        if req.body_error is not None or not isinstance(body, dict):
            raise ApiError(400, "Malformed input request: the body must be a JSON object")
        spec, base = model
        if base == _EMBED_V4:
            return Reply.json(200, _embed_v4(spec, body, self.image_url_form))
        answer = {_NOVA: _nova, _TITAN: _titan, _M30: _marengo3, _M27: _marengo27}[base]
        return Reply.json(200, answer(spec, body))

    def _model(self, req: Incoming) -> tuple[ModelSpec, str]:
        raw = (req.raw_path or req.path)[len("/model/"):-len("/invoke")]
        if "/" in raw:  # the id must be ONE segment (an ARN's slashes are encoded)
            raise ApiError(404, "Unknown operation", code="UnknownOperationException")
        model = urllib.parse.unquote(raw)
        base = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
        profile = next((p for p in PROFILES if base.startswith(p)), "")
        base = base[len(profile):]
        spec = find_model("bedrock", base)
        if spec is None:
            raise ApiError(400, "The provided model identifier is invalid.")
        if base == _M27 and not profile:
            raise ApiError(400, f"Invocation of model ID {model} with on-demand throughput isn't supported. Retry "
                                "your request with the ID or ARN of an inference profile that contains this model.")
        return spec, base


def _extraneous(body: dict[str, Any], allowed: set[str], where: str = "#") -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(400, f"Malformed input request: {where}: extraneous key [{extra[0]}] is not permitted, "
                            "please reformat your input and try again.")


def _b64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, f"Malformed input request: {where} must be a base64 string")
    try:
        return decode_base64(value)
    except ImageDataError as exc:
        raise ApiError(400, f"Malformed input request: {where}: {exc}") from None


def _picture(data: bytes, formats: frozenset[str], where: str, max_bytes: int = 25_000_000) -> Any:
    if len(data) > max_bytes:
        raise ApiError(400, f"{where}: the image is {len(data)} bytes, over {max_bytes}")
    try:
        return load_image(data, formats, where)
    except ImageDataError as exc:
        raise ApiError(400, f"{where}: {exc}") from None


# -- Nova --------------------------------------------------------------------------------------------------------
def _nova(spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    _extraneous(body, {"schemaVersion", "taskType", "singleEmbeddingParams"})
    if body.get("schemaVersion", "nova-multimodal-embed-v1") != "nova-multimodal-embed-v1":
        raise ApiError(400, "Malformed input request: #/schemaVersion must be nova-multimodal-embed-v1")
    if body.get("taskType") != "SINGLE_EMBEDDING":
        raise ApiError(400, "Malformed input request: #/taskType must be SINGLE_EMBEDDING on InvokeModel")
    params = body.get("singleEmbeddingParams")
    if not isinstance(params, dict):
        raise ApiError(400, "Malformed input request: #: required key [singleEmbeddingParams] not found")
    _extraneous(params, {"embeddingPurpose", "embeddingDimension", "text", "image", "audio", "video"},
                "#/singleEmbeddingParams")
    purpose = params.get("embeddingPurpose")
    if purpose not in PURPOSES:
        raise ApiError(400, f"Malformed input request: embeddingPurpose must be one of {sorted(PURPOSES)}")
    dims = params.get("embeddingDimension", 3072)
    if dims not in (256, 384, 1024, 3072) or isinstance(dims, bool):
        raise ApiError(400, "Malformed input request: embeddingDimension must be 256, 384, 1024 or 3072")
    given = [k for k in ("text", "image", "audio", "video") if k in params]
    if len(given) != 1:
        raise ApiError(400, "Malformed input request: exactly one of text, image, audio, video is required")
    (kind,) = given
    vector = _nova_vector(spec, kind, params[kind], purpose in QUERY_PURPOSES)
    embedding_type = {"video": "AUDIO_VIDEO_COMBINED"}.get(kind, kind.upper())
    return {"embeddings": [{"embeddingType": embedding_type, "embedding": to_wire(truncate(vector, dims))}]}


def _nova_vector(spec: ModelSpec, kind: str, content: object, query: bool) -> np.ndarray:
    space = get_space(spec.space, spec.dim)
    where = f"#/singleEmbeddingParams/{kind}"
    if not isinstance(content, dict):
        raise ApiError(400, f"Malformed input request: {where} must be an object")
    if kind == "text":
        _extraneous(content, {"truncationMode", "value", "source"}, where)
        if content.get("truncationMode") not in ("START", "END", "NONE"):
            raise ApiError(400, f"Malformed input request: {where}: required key [truncationMode] not found")
        value = content.get("value")
        if not isinstance(value, str) or not value or len(value) > 8192:
            raise ApiError(400, f"Malformed input request: {where}/value must be 1 to 8192 characters")
        return np.asarray(space.text(value, query=query, modality=spec.modality_weight))
    allowed = {"format", "source", "detailLevel"} if kind == "image" else {"format", "source", "embeddingMode"}
    _extraneous(content, allowed, where)
    source = content.get("source")
    if not isinstance(source, dict) or set(source) != {"bytes"}:
        raise ApiError(400, f"Malformed input request: {where}/source must be exactly one of bytes, s3Location")
    data = _b64(source["bytes"], f"{where}/source/bytes")
    fmt = content.get("format")
    if kind == "image":
        if fmt not in NOVA_FORMATS or content.get("detailLevel", "STANDARD_IMAGE") not in (
                "STANDARD_IMAGE", "DOCUMENT_IMAGE"):
            raise ApiError(400, f"Malformed input request: {where}: format or detailLevel is not valid")
        picture = _picture(data, frozenset({NOVA_FORMATS[fmt]}), where)
        return np.asarray(space.image(picture, modality=spec.modality_weight))
    if fmt not in NOVA_MEDIA[kind]:
        raise ApiError(400, f"Malformed input request: {where}/format {fmt!r} is not valid")
    if kind == "video" and content.get("embeddingMode") not in ("AUDIO_VIDEO_COMBINED", "AUDIO_VIDEO_SEPARATE"):
        raise ApiError(400, f"Malformed input request: {where}: required key [embeddingMode] not found")
    return media_vector(spec, kind, data, where, NOVA_SECONDS)


# -- Titan -------------------------------------------------------------------------------------------------------
def _titan(spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    _extraneous(body, {"inputText", "inputImage", "embeddingConfig"})
    text, image = body.get("inputText"), body.get("inputImage")
    if text is None and image is None:
        raise ApiError(400, "Malformed input request: at least one of inputText, inputImage is required")
    config = body.get("embeddingConfig", {})
    if not isinstance(config, dict) or set(config) - {"outputEmbeddingLength"}:
        raise ApiError(400, "Malformed input request: #/embeddingConfig: extraneous key")
    dims = config.get("outputEmbeddingLength", 1024)
    if dims not in (256, 384, 1024) or isinstance(dims, bool):
        raise ApiError(400, "Malformed input request: outputEmbeddingLength must be 256, 384 or 1024")
    space = get_space(spec.space, spec.dim)
    parts = []
    if text is not None:
        if not isinstance(text, str) or not text or len(text.split()) > 256:
            raise ApiError(400, "Malformed input request: inputText must be a string of at most 256 tokens")
        parts.append(np.asarray(space.text(text, modality=spec.modality_weight)))
    if image is not None:
        picture = _picture(_b64(image, "#/inputImage"), frozenset({"PNG", "JPEG"}), "#/inputImage")
        if max(picture.size) > 2048:
            raise ApiError(400, "Malformed input request: the image is larger than 2048x2048 pixels")
        parts.append(np.asarray(space.image(picture, modality=spec.modality_weight)))
    vector = truncate(np.mean(parts, axis=0), dims)  # both: the API averages them
    return {"embedding": to_wire(vector), "inputTextTokenCount": len(str(text or "").split()), "message": None}


# -- Marengo -----------------------------------------------------------------------------------------------------
def _marengo3(spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("inputType")
    if kind not in ("text", "image", "text_image"):
        raise ApiError(400, "Malformed input request: inputType must be text, image or text_image on InvokeModel")
    _extraneous(body, {"inputType", kind, "inferenceId"})
    content = body.get(kind)
    if not isinstance(content, dict):
        raise ApiError(400, f"Malformed input request: #: required key [{kind}] not found")
    vector = marengo_vector(spec, kind, content, camel=True)
    return {"data": [{"embedding": to_wire(vector)}]}


def _marengo27(spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("inputType")
    if kind == "text":
        _extraneous(body, {"inputType", "inputText", "textTruncate"})
        content = {"inputText": body.get("inputText")}
    elif kind == "image":
        _extraneous(body, {"inputType", "mediaSource"})
        content = {"mediaSource": body.get("mediaSource")}
    else:
        raise ApiError(400, "Malformed input request: inputType must be text or image")
    vector = marengo_vector(spec, kind, content, camel=True)
    return {"embedding": to_wire(vector), "embeddingOption": None, "startSec": 0.0, "endSec": 0.0}


# -- embed-v4 on Bedrock -----------------------------------------------------------------------------------------
def _embed_v4(spec: ModelSpec, body: dict[str, Any], image_url_form: str) -> dict[str, Any]:
    _extraneous(body, {"input_type", "texts", "images", "inputs", "embedding_types", "output_dimension",
                       "max_tokens", "truncate"})
    if body.get("input_type") not in spec.tasks:
        raise ApiError(400, f"Malformed input request: input_type must be one of {sorted(spec.tasks)}")
    given = [key for key in ("texts", "images", "inputs") if body.get(key) is not None]
    if len(given) != 1:
        raise ApiError(400, "Malformed input request: exactly one of texts, images, inputs is required")
    dims = body.get("output_dimension")
    if dims is not None and (isinstance(dims, bool) or dims not in (256, 512, 1024, 1536)):
        raise ApiError(400, "Malformed input request: output_dimension must be 256, 512, 1024 or 1536")
    types = body.get("embedding_types", ["float"])
    entries = items(given[0], body[given[0]], image_url_form)
    vectors = [vector(spec, parts, body["input_type"] == "search_query", dims) for parts in entries]
    return {"id": "emulated", "embeddings": {t: [to_wire(v) for v in vectors] for t in types if t == "float"},
            "response_type": "embeddings_by_type", "texts": [v for p in entries for k, v in p if k == "text"]}
