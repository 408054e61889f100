"""Amazon Bedrock: InvokeModel (``POST /model/{modelId}/invoke``) for four multimodal embedding families.

* ``amazon.nova-2-multimodal-embeddings-v1:0`` (default) — Nova Multimodal Embeddings: text, image (a rendered PDF
  page goes as a ``DOCUMENT_IMAGE``), audio and video up to 30 s a call (longer files in 30-s windows cut here,
  averaged; ``Embedder.expand`` gives their segments), one modality per call; 256/384/1024/3072-d.
* ``amazon.titan-embed-image-v1`` — Titan Multimodal Embeddings G1: text, image, or one text + one image (the API
  averages them into one vector); 256/384/1024-d.
* Marengo 3.0 (and 2.7 by inference profile): the Marengo family, whose Bedrock ids it lists (``cloud_ids``).
* embed-v4: the embed-v4 family, whose Bedrock id it lists (``cloud_ids``), up to 96 inputs a call.

(The model ids: docs/providers/bedrock.md.)

Model ids, ARNs and inference-profile ids (``us.``, ``eu.``, ``apac.``, ``global.``) go out exactly as given, as one
path segment percent-encoded once (``:`` → ``%3A``). Requests are SigV4-signed for the service ``bedrock`` with
botocore's credential chain (environment, shared profile, SSO, instance role; session tokens), signed afresh on
every attempt (a retry gets a new ``X-Amz-Date``); a Bedrock API key (``AWS_BEARER_TOKEN_BEDROCK`` or ``api_key=``)
goes as ``Authorization: Bearer`` instead. botocore is the optional extra ``mmembed[bedrock]``.

Errors are ``{"message"}`` with the type in ``x-amzn-ErrorType``; 403s (bad signature, unknown key, no model
access) are auth errors, a ``ValidationException`` on a one-item call names that item. Throttling (429, no
``Retry-After``) is retried with jittered backoff by the transport, which also pauses every worker.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, TypedDict, TypeVar

import numpy as np
import requests

from .._extras import missing_extra
from ..errors import ConfigurationError, InputError, InvalidResponseError, TextTooLongWarning
from ..inputs import ImageItem, InterleavedItem, Item, MediaItem, PageImage
from ..options import Doc, ModelOptions
from ._cohere_v4 import CohereV4
from ._marengo import Marengo
from .base import Hosting, ModelFamily, ModelInfo, Provider, Ready, Task, json_body

__all__ = ["BedrockProvider", "BedrockSettings", "NovaEmbeddings", "SigV4Signer", "TitanMultimodal"]

T = TypeVar("T")
DEFAULT_REGION = "us-east-1"
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
SERVICE = "bedrock"  # the signing name (not bedrock-runtime)
SAFE = "-._~"  # what botocore leaves unencoded in a path label
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "ca.", "jp.", "au.")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- Nova Multimodal Embeddings ---------------------------------------------------------------------------------
NOVA_FORMATS = {
    "image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp",
    "audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav", "audio/ogg": "ogg",
    "video/mp4": "mp4", "video/quicktime": "mov", "video/x-matroska": "mkv", "video/webm": "webm",
    "video/x-flv": "flv", "video/mpeg": "mpeg", "video/x-ms-wmv": "wmv", "video/3gpp": "3gp",
}
NOVA_TEXT_CHARS = 8192
NOVA_PURPOSES = frozenset(
    {"GENERIC_INDEX", "GENERIC_RETRIEVAL", "TEXT_RETRIEVAL", "IMAGE_RETRIEVAL", "VIDEO_RETRIEVAL",
     "DOCUMENT_RETRIEVAL", "AUDIO_RETRIEVAL", "CLASSIFICATION", "CLUSTERING"}
)
_NOVA = "amazon.nova-2-multimodal-embeddings-v1:0"


class NovaSettings(TypedDict, total=False):
    """Nova's own options: the ``embeddingPurpose`` of documents and of queries."""

    document_purpose: Annotated[
        str | None, Doc("Nova embeddingPurpose for documents (what an index holds).", default="GENERIC_INDEX")
    ]
    query_purpose: Annotated[
        str | None,
        Doc("Nova embeddingPurpose for queries: GENERIC_RETRIEVAL for a mixed index, or TEXT_/IMAGE_/VIDEO_/"
            "DOCUMENT_/AUDIO_RETRIEVAL for an index of one kind.", default="GENERIC_RETRIEVAL"),
    ]


class NovaEmbeddings(ModelFamily):
    """Nova Multimodal Embeddings: one text, image, audio or video per call (media up to 30 s)."""

    models: ClassVar[dict[str, ModelInfo]] = {
        _NOVA: ModelInfo(_NOVA, 3072, image_side=768, dimension_choices=(256, 384, 1024, 3072), max_batch=1),
    }
    settings: ClassVar[type | None] = NovaSettings
    kinds: ClassVar[frozenset[str]] = frozenset({"text", "image", "video", "audio"})
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
    # Audio and video up to 30 s a request; longer files go in 30-s windows (averaged), cut here since the API
    # takes a file but no time range (packets copied, never re-encoded: see mmembed.mediainfo.cut).
    media_seconds: ClassVar[float | None] = 30.0
    video_clips: ClassVar[bool] = True
    _warned_long = False  # a text over NOVA_TEXT_CHARS was cut (warned once per embedder)
    audio_clips: ClassVar[bool] = True
    document_purpose: str
    query_purpose: str

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        for purpose in (self.document_purpose, self.query_purpose):
            if purpose not in NOVA_PURPOSES:
                raise ConfigurationError(f"{self.name}: embeddingPurpose must be one of {sorted(NOVA_PURPOSES)}")

    def reads_page_text(self) -> bool:
        return False  # a page goes as a DOCUMENT_IMAGE: the model reads its text itself

    def prepare(self, item: Item) -> Ready:
        ready = super().prepare(item)
        if isinstance(item, ImageItem) and isinstance(item.raw, PageImage):
            return replace(ready, kind="document")
        return ready

    def prepare_media(self, item: MediaItem) -> Ready:
        """A clip (a window of a longer file, or a span asked for) is cut from the file here."""
        ready = super().prepare_media(item)
        if ready.media is None or (ready.start is None and ready.end is None):
            return ready
        from ..mediainfo import cut, probe

        duration = probe(ready.media).duration
        start, end = ready.start or 0.0, min(ready.end if ready.end is not None else duration, duration)
        data = ready.media
        if start > 0 or end < duration:
            data = cut(data, ready.media_type or "", start, end, max_seconds=self.media_seconds)
        return replace(ready, media=data, start=None, end=None)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        (ready,) = batch
        params: dict[str, Any] = {
            "embeddingPurpose": self.query_purpose if task == "query" else self.document_purpose,
        }
        if self.dimensions is not None and self.info.known:
            params["embeddingDimension"] = self.dimensions
        params.update(self._content(ready))
        body = {"schemaVersion": "nova-multimodal-embed-v1", "taskType": "SINGLE_EMBEDDING",
                "singleEmbeddingParams": params}
        path = self.provider.model_path(self.model, "/invoke")
        return self.one_item(lambda: self.provider.post(path, self._parse, json=body))

    def _content(self, ready: Ready) -> dict[str, Any]:
        if ready.text is not None:
            if len(ready.text) > NOVA_TEXT_CHARS and not self._warned_long:
                self._warned_long = True
                warnings.warn(
                    f"{self.name}: a text of {len(ready.text):,} characters is over {self.model}'s "
                    f"{NOVA_TEXT_CHARS:,}-character limit; its first {NOVA_TEXT_CHARS:,} are sent (warned once)",
                    TextTooLongWarning,
                    stacklevel=2,
                )
            return {"text": {"truncationMode": "END", "value": ready.text[:NOVA_TEXT_CHARS]}}
        if ready.image is not None:
            detail = "DOCUMENT_IMAGE" if ready.kind == "document" else "STANDARD_IMAGE"
            return {"image": {"format": NOVA_FORMATS[ready.image.media_type], "detailLevel": detail,
                              "source": {"bytes": b64(ready.image.data)}}}
        if ready.media is None or ready.kind not in ("audio", "video"):
            raise InputError(f"{self.name}: {self.model} takes text, images, audio and video")
        fmt = NOVA_FORMATS.get(ready.media_type or "")
        if fmt is None:
            raise InputError(f"{self.name}: {self.model} does not take {ready.media_type} {ready.kind}")
        content: dict[str, Any] = {"format": fmt, "source": {"bytes": b64(ready.media)}}
        if ready.kind == "video":
            content["embeddingMode"] = "AUDIO_VIDEO_COMBINED"
        return {ready.kind: content}

    def _parse(self, response: requests.Response) -> list[np.ndarray]:
        body = json_body(response, self.name)
        entries = body.get("embeddings") if isinstance(body, dict) else None
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            return self.finish([entries[0].get("embedding")], 1)
        if isinstance(body, dict) and isinstance(body.get("embedding"), list):
            return self.finish([body["embedding"]], 1)
        raise InvalidResponseError("response has no 'embeddings' list", provider=self.name, body=response.text)


# -- Titan Multimodal Embeddings G1 --------------------------------------------------------------------------
_TITAN = "amazon.titan-embed-image-v1"


class TitanMultimodal(ModelFamily):
    """Titan Multimodal Embeddings G1: a text, an image, or one of each (averaged by the API) per call."""

    models: ClassVar[dict[str, ModelInfo]] = {
        _TITAN: ModelInfo(_TITAN, 1024, image_side=512, max_side=2048, dimension_choices=(256, 384, 1024),
                          max_batch=1),
    }
    kinds: ClassVar[frozenset[str]] = frozenset({"text", "image", "interleaved"})

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        """One text and one image with equal weights: the API's own average of the two."""
        kinds = sorted(part.kind for part in item.parts)
        equal = item.weights is None or len(set(item.weights)) == 1
        return kinds == ["image", "text"] and equal

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        (ready,) = batch
        body: dict[str, Any] = {}
        for part in ready.parts or (ready,):
            if part.text is not None:
                body["inputText"] = part.text
            elif part.image is not None:
                body["inputImage"] = b64(part.image.data)
        if self.dimensions is not None and self.info.known:
            body["embeddingConfig"] = {"outputEmbeddingLength": self.dimensions}
        path = self.provider.model_path(self.model, "/invoke")
        return self.one_item(lambda: self.provider.post(path, self._parse, json=body))

    def _parse(self, response: requests.Response) -> list[np.ndarray]:
        body = json_body(response, self.name)
        if not isinstance(body, dict) or not isinstance(body.get("embedding"), list):
            raise InvalidResponseError("response has no 'embedding' list", provider=self.name, body=response.text)
        return self.finish([body["embedding"]], 1)


# -- SigV4 -------------------------------------------------------------------------------------------------------
class SigV4Signer:
    """Signs one request for ``bedrock`` in ``region`` with botocore's credentials (refreshed as they expire)."""

    def __init__(self, region: str, profile: str | None) -> None:
        try:
            import botocore.session
        except ImportError as exc:
            raise missing_extra("signing Amazon Bedrock requests", "botocore", "bedrock") from exc
        session = botocore.session.Session(profile=profile)
        credentials = session.get_credentials()
        if credentials is None:
            raise ConfigurationError(
                "bedrock: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                "AWS_SESSION_TOKEN), or AWS_PROFILE / aws_profile=..., or a Bedrock API key in "
                "AWS_BEARER_TOKEN_BEDROCK (or api_key=...)"
            )
        self._credentials = credentials
        self.region = region

    def __repr__(self) -> str:
        return f"SigV4Signer(service={SERVICE!r}, region={self.region!r})"

    def headers(self, url: str, body: bytes) -> dict[str, str]:
        """The headers of one attempt: ``X-Amz-Date`` now, the session token if any, and the signature."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(self._credentials.get_frozen_credentials(), SERVICE, self.region).add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}


def default_region(profile: str | None) -> str | None:
    """The region of the AWS environment or profile (AWS_REGION, AWS_DEFAULT_REGION, the profile's config)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    try:
        import botocore.session
    except ImportError:
        return None
    value = botocore.session.Session(profile=profile).get_config_variable("region")
    return str(value) if value else None


# -- the provider ------------------------------------------------------------------------------------------------
class BedrockSettings(ModelOptions, total=False):
    """Bedrock's own options (besides ``model``)."""

    region: Annotated[
        str | None,
        Doc("AWS region of the Bedrock runtime (default: AWS_REGION / AWS_DEFAULT_REGION / the profile / us-east-1)."),
    ]
    aws_profile: Annotated[str | None, Doc("Shared-config profile to take credentials from (default: AWS_PROFILE).")]


class BedrockProvider(Provider):
    """Amazon Bedrock: Nova Multimodal Embeddings (default), Titan Multimodal G1, Marengo and embed-v4."""

    name: ClassVar[str] = "bedrock"
    title: ClassVar[str] = "Bedrock"
    env_var: ClassVar[str] = "AWS_BEARER_TOKEN_BEDROCK"  # a Bedrock API key; else SigV4 with AWS credentials
    key_required: ClassVar[bool] = False
    secret_headers: ClassVar[tuple[str, ...]] = ("Authorization", "X-Amz-Security-Token")
    config_env_vars: ClassVar[tuple[str, ...]] = (
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    )
    default_base_url: ClassVar[str] = "https://bedrock-runtime.us-east-1.amazonaws.com"
    official_hosts: ClassVar[tuple[str, ...]] = (
        "bedrock-runtime.*.amazonaws.com", "bedrock-runtime-fips.*.amazonaws.com", "bedrock-runtime.*.api.aws",
    )
    settings: ClassVar[type] = BedrockSettings
    # One item per call (but embed-v4's): many calls in flight, within Bedrock's default per-model quotas.
    families = (
        Hosting(NovaEmbeddings, concurrency=8, requests_per_minute=2000),
        Hosting(TitanMultimodal, concurrency=8, requests_per_minute=2000),
        Hosting(Marengo, concurrency=8, requests_per_minute=2000, models=Marengo.cloud_ids, wire={"case": "camel"}),
        Hosting(CohereV4, concurrency=4, requests_per_minute=2000, models=CohereV4.cloud_ids,
                wire={"model_field": False, "truncate": False}),
    )
    default_model: ClassVar[str] = _NOVA
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.bedrock:BedrockRuntime",)
    test_options: ClassVar[Mapping[str, Any]] = {"region": "us-east-1"}
    region: str | None
    aws_profile: str | None

    @classmethod
    def base_model(cls, model: str) -> str:
        """A cross-region inference profile (``us.…``) or foundation-model ARN stands for its base model id."""
        if model.startswith("arn:") and "/" in model:
            model = model.rsplit("/", 1)[1]
        prefix = next((p for p in PROFILE_PREFIXES if model.startswith(p)), "")
        return model[len(prefix):]

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        # Nothing configured anywhere: us-east-1, where every model here is offered.
        self.region = self.region or default_region(self.aws_profile) or DEFAULT_REGION
        if not REGION.fullmatch(self.region):  # it becomes part of the host name and the signature's scope
            raise ConfigurationError(f"bedrock: {self.region!r} is not an AWS region name (e.g. us-east-1)")
        self._signer: SigV4Signer | None = None

    def default_url(self) -> str:
        return f"https://bedrock-runtime.{self.region}.amazonaws.com"

    def model_path(self, model: str, path: str) -> str:
        """``/model/{id}/invoke``: the id as ONE path segment, percent-encoded once (``:`` → ``%3A``)."""
        return f"/model/{urllib.parse.quote(model, safe=SAFE)}/invoke"

    def post(self, path: str, parse: Callable[[requests.Response], T], **body: Any) -> T:
        """POST the JSON body, Bearer with a Bedrock API key, else SigV4-signed afresh on every attempt."""
        if self._api_key:
            return super().post(path, parse, **body)
        data = json.dumps(body["json"], separators=(",", ":")).encode()
        url = self.url(path)
        signer = self.signer()
        return self.transport.post(url, parse, headers=lambda: signer.headers(url, data), data=data)

    def signer(self) -> SigV4Signer:
        if self._signer is None:
            self._signer = SigV4Signer(str(self.region), self.aws_profile)
        return self._signer

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """``{"message"}`` with the error type from ``x-amzn-ErrorType`` (the text before ``:``)."""
        text, request_id = super().describe_error(response)
        kind = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
        form = getattr(self.family, "image_url_form", None)
        if form is not None and "image_url" in text:  # the doc pages disagree on the shape (UNCONFIRMED)
            other = "string" if form == "object" else "object"
            text += f" (embed-v4's image_url went as an {form}: try image_url_form={other!r})"
        return (f"{kind}: {text}" if kind else text), request_id

    def error_message(self, body: dict[str, Any], response: requests.Response) -> str | None:
        message = body.get("message") or body.get("Message")
        return str(message) if message else None

    def request_id(self, response: requests.Response, body: dict[str, Any]) -> str | None:
        return response.headers.get("x-amzn-RequestId") or response.headers.get("x-amz-request-id")
