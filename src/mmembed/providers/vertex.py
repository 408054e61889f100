"""Google Vertex AI: ``multimodalembedding@001`` over REST ``:predict``, ``gemini-embedding-2`` over ``:embedContent``.

One instance per request, as the online endpoint documents; an instance may carry one text **and** one
image, and then both embeddings come back, so a mixed stream pairs a text with an image per request and
needs half the requests. ``parameters.dimension`` sits at the top level of the body. Images go as
``bytesBase64Encoded`` JPEG/PNG (never WebP) or ``gcsUri``; http(s) URLs are downloaded here, under the
download policy, because the API cannot fetch them. Auth: an API key in the ``x-goog-api-key`` header
(never in the URL), else Application Default Credentials through google-auth, refreshed as they expire.

``gemini-embedding-2`` (and other Gemini embedding models but ``gemini-embedding-001``) speak ``:embedContent``:
one ``content`` per call, since Vertex has no batch method for them, so the Embedder keeps ``max_concurrency``
single-item requests in flight within the rate limit. Options go in ``embedContentConfig``; tasks are prompt
prefixes on texts, as on the Gemini API (:mod:`mmembed.providers.gemini`). Such models default to the
``global`` location (host ``aiplatform.googleapis.com``). With an API key and no project, the request goes to
the express-mode path (``/v1beta1/publishers/google/models/…``), as Google's SDK sends it.
"""

from __future__ import annotations

import base64
import math
import os
import pathlib
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import requests

from ..errors import ConfigurationError, InputError, InvalidResponseError, TextTooLongWarning
from ..inputs import InterleavedItem, Item, TextItem, VideoItem
from . import _google
from .base import ALL_KINDS, ModelInfo, Provider, ProviderOptions, Ready, Task, json_body

__all__ = ["TextTooLongWarning", "VertexProvider"]

MODELS = {
    "multimodalembedding@001": ModelInfo(
        "multimodalembedding@001", 1408, image_side=512, dimension_choices=(128, 256, 512, 1408)
    ),
    **{
        name: ModelInfo(name, 3072, image_side=768, max_side=2048, api_dimensions=(128, 3072))
        for name in ("gemini-embedding-2", "gemini-embedding-2-preview")
    },
}
# Gemini models on Vertex: one item per request, so more in flight than @001's 4 (dynamic shared quota, no
# published per-project figure: a 429 pauses every worker and is retried).
GEMINI_CONCURRENCY = 8
GEMINI_REQUESTS_PER_MINUTE = 600
EXPRESS_API_VERSION = "v1beta1"  # the version Google's SDK uses for express mode (API key, no project)
TEXT_TOKEN_LIMIT = 32
VIDEO_DIMENSIONS = 1408  # video vectors are always 1408-d: parameters.dimension applies to text and image only
MIN_INTERVAL = 4  # intervalSec below 4 is INVALID_ARGUMENT
KINDS = frozenset({"text", "image", "video", "interleaved"})
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class VertexProvider(Provider):
    """Google Vertex AI: multimodalembedding@001 (1408-d; 128/256/512) or gemini-embedding-2 (3072-d); a key or ADC."""

    name: ClassVar[str] = "vertex"
    title: ClassVar[str] = "Vertex"
    option_names: ClassVar[tuple[str, ...]] = (
        "model", "project_id", "location", "credentials", "query_template", "document_template"
    )
    extra_keys: ClassVar[tuple[str, ...]] = ("project_id", "location", "query_template", "document_template")
    env_var: ClassVar[str] = "GOOGLE_API_KEY"
    default_base_url: ClassVar[str] = "https://{location}-aiplatform.googleapis.com"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.vertex:Vertex", "mmembed.testing.vertex:VertexGemini")
    config_env_vars: ClassVar[tuple[str, ...]] = ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION")
    test_options: ClassVar[Mapping[str, Any]] = {"project_id": "test-project"}
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    accepts_gcs: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = 120
    rate_window: ClassVar[float] = 60.0  # a per-minute quota per project and region
    key_required: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = KINDS
    model_kinds: ClassVar[dict[str, frozenset[str]]] = {
        "multimodalembedding@001": KINDS,
        "gemini-embedding-2": ALL_KINDS,
        "gemini-embedding-2-preview": ALL_KINDS,
    }
    video_clips: ClassVar[bool] = True

    def __init__(
        self,
        options: ProviderOptions,
        *,
        model: str | None = None,
        project_id: str | None = None,
        location: str | None = None,
        credentials: Any = None,
        query_template: str | None = None,
        document_template: str | None = None,
    ) -> None:
        self.model = model or "multimodalembedding@001"
        self.embed_content = _google.is_embed_content_model(self.model)
        self.query_template: str | None = None
        self.document_template: str | None = None
        if self.embed_content:
            self.query_template = _google.check_template("query_template", query_template or _google.QUERY_TEMPLATE)
            self.document_template = _google.check_template(
                "document_template", document_template or _google.DOCUMENT_TEMPLATE
            )
        elif query_template or document_template:
            raise ConfigurationError(f"vertex: {self.model} takes no prompt templates (only Gemini models do)")
        default_location = "global" if self.embed_content else "us-central1"
        self.location = location or os.environ.get("GOOGLE_CLOUD_LOCATION") or default_location
        if options.base_url is None:
            options = replace(options, base_url=f"https://{location_host(self.location)}")
        if self.embed_content:
            options = replace(
                options,
                max_concurrency=options.max_concurrency or GEMINI_CONCURRENCY,
                requests_per_minute=options.requests_per_minute or GEMINI_REQUESTS_PER_MINUTE,
            )
        super().__init__(options)
        self.info = MODELS.get(self.model) or ModelInfo(self.model, None, known=False)
        self.check_dimensions(self.info)
        if self.dimensions is None:
            self.dimensions = self.info.dimensions
        self._credentials = credentials
        self._auth_lock = threading.Lock()
        adc_project = None
        if self._api_key is None and self._credentials is None:
            self._credentials, adc_project = _default_credentials(self.api_key_env_var)
        self.project_id = project_id or os.environ.get("GOOGLE_CLOUD_PROJECT") or adc_project
        express = self.embed_content and self._api_key is not None
        if not self.project_id and not express:
            raise ConfigurationError(
                "vertex: no project; set GOOGLE_CLOUD_PROJECT or pass project_id=..."
            )
        self._warned_long_text = False
        # Gemini models: prompt tokens by modality, summed over answered calls (what an image really costs).
        self.usage: dict[str, int] = {}
        self._usage_lock = threading.Lock()

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", project_id={self.project_id!r}, location={self.location!r})"

    def model_names(self) -> dict[str, str]:
        return {"model": self.model}

    def image_model(self) -> ModelInfo:
        return self.info

    @property
    def endpoint(self) -> str:
        method = "embedContent" if self.embed_content else "predict"
        if not self.project_id:  # express mode: an API key, no project (Gemini models only)
            return f"{self.base_url}/{EXPRESS_API_VERSION}/publishers/google/models/{self.model}:{method}"
        return (
            f"{self.base_url}/v1/projects/{self.project_id}/locations/{self.location}"
            f"/publishers/google/models/{self.model}:{method}"
        )

    def route(self, item: Item) -> str:
        if self.embed_content:
            return "content"
        return "video" if isinstance(item, VideoItem) else "instance"

    def cap(self, route: str) -> int:
        if route == "video":  # consecutive segments of one video share a request (one per interval)
            return int(self.options.media_limits.video_window // MIN_INTERVAL)
        return 1 if self.embed_content else 2

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if self.embed_content:
            return not batch
        if route == "video":
            return not batch or _next_segment(batch, item, self.options.media_limits.video_window)
        # One instance: at most one text and one image; a video or an interleaved pair goes alone.
        alone = (VideoItem, InterleavedItem)
        if isinstance(item, alone) or any(isinstance(b, alone) for b in batch):
            return not batch
        return not any(type(b) is type(item) for b in batch)

    def clips_video(self) -> bool:
        return not self.embed_content  # @001's videoSegmentConfig; gemini-embedding-2 takes whole files

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        """@001: one text and one image share an instance (two vectors come back, averaged by the weights)."""
        if self.embed_content:
            return super().takes_interleaved(item) and _google.one_content(item)
        return sorted(part.kind for part in item.parts) == ["image", "text"]

    def task_key(self, item: Item, task: Task) -> str:
        if self.embed_content:  # prompt prefixes on texts, media bare (as on the Gemini API)
            if not isinstance(item, TextItem):
                return "media"
            return f"{task}:{self._template(task)}"
        return task

    def prepare(self, item: Item) -> Ready:
        if isinstance(item, TextItem) and not self.embed_content:
            self._warn_if_long(item.text)
        if isinstance(item, InterleavedItem):
            for part in item.parts:
                if isinstance(part, TextItem):
                    self._warn_if_long(part.text)
        if self.embed_content:
            _google.check_media_type(item)
        elif isinstance(item, VideoItem) and self.dimensions not in (None, VIDEO_DIMENSIONS):
            raise InputError(
                f"vertex: video vectors are always {VIDEO_DIMENSIONS}-d, so a collection of {self.dimensions}-d "
                "vectors cannot hold them; omit dimensions= to embed video"
            )
        return super().prepare(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        if self.embed_content:
            return self._embed_content(batch, task)
        instance: dict[str, Any] = {}
        if route == "video" and len(batch) > 1:
            _fill_segments(instance, batch)
        else:
            for ready in batch:
                for part in ready.parts or (ready,):
                    _fill(instance, part, self.options.media_limits.video_interval)
        body: dict[str, Any] = {"instances": [instance]}
        if self.options.dimensions is not None:
            body["parameters"] = {"dimension": self.options.dimensions}
        return self.transport.post(self.endpoint, self._parser(batch), headers=self._headers, json=body)

    def _embed_content(self, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        (ready,) = batch
        body: dict[str, Any] = {"content": _google.content(ready, self._template(task))}
        if self.dimensions is not None:
            body["embedContentConfig"] = {"outputDimensionality": self.dimensions}
        return self.transport.post(self.endpoint, self._content_parser, headers=self._headers, json=body)

    def _template(self, task: Task) -> str | None:
        return self.query_template if task == "query" else self.document_template

    def _content_parser(self, response: requests.Response) -> list[np.ndarray]:
        body = json_body(response, self.name)
        embedding = body.get("embedding") if isinstance(body, dict) else None
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise InvalidResponseError("response has no 'embedding.values'", provider=self.name, body=response.text)
        if body.get("truncated") is True:
            self._warn_truncated()
        vectors = self.finish([values], 1)
        self._count_usage(body.get("usageMetadata"))
        return vectors

    def _count_usage(self, usage: object) -> None:
        details = usage.get("promptTokensDetails") if isinstance(usage, dict) else None
        if not isinstance(details, list):
            return
        with self._usage_lock:
            for detail in details:
                if isinstance(detail, dict) and isinstance(detail.get("tokenCount"), int):
                    modality = str(detail.get("modality", "UNKNOWN"))
                    self.usage[modality] = self.usage.get(modality, 0) + detail["tokenCount"]

    def _headers(self) -> dict[str, str]:
        if self._api_key is not None:
            return {"x-goog-api-key": self._api_key}
        with self._auth_lock:
            creds = self._credentials
            if not creds.valid:
                from google.auth.transport.requests import Request

                creds.refresh(Request())
            return {"Authorization": f"Bearer {creds.token}"}

    def _parser(self, batch: Sequence[Ready]) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            predictions = body.get("predictions") if isinstance(body, dict) else None
            if not isinstance(predictions, list) or len(predictions) != 1 or not isinstance(predictions[0], dict):
                raise InvalidResponseError("expected exactly one prediction", provider=self.name, body=response.text)
            prediction = predictions[0]
            if len(batch) > 1 and all(r.kind == "video" for r in batch):
                return self._segment_vectors(prediction, batch)
            return [self._vector(prediction, ready) for ready in batch]

        return parse

    def _segment_vectors(self, prediction: dict[str, Any], batch: Sequence[Ready]) -> list[np.ndarray]:
        """Each segment's vector, matched by its start offset (never by position)."""
        segments = prediction.get("videoEmbeddings")
        if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
            raise InvalidResponseError("prediction lacks videoEmbeddings", provider=self.name)
        by_start = {s.get("startOffsetSec", 0): s.get("embedding") for s in segments}
        starts = [int(r.start or 0) for r in batch]
        missing = [start for start in starts if start not in by_start]
        if missing or len(by_start) != len(segments):
            raise InvalidResponseError(
                f"videoEmbeddings do not match the segments asked for (missing starts {missing})", provider=self.name
            )
        return _finish_video(self, [by_start[start] for start in starts])

    def _vector(self, prediction: dict[str, Any], ready: Ready) -> np.ndarray:
        """One item's vector from the prediction: its text/image embedding, a video's segments averaged (one
        segment when the request asked for one), an interleaved pair's two embeddings averaged."""
        if ready.kind == "video":
            segments = prediction.get("videoEmbeddings")
            if not isinstance(segments, list) or not segments or not all(isinstance(s, dict) for s in segments):
                raise InvalidResponseError("prediction lacks videoEmbeddings", provider=self.name)
            vectors = _finish_video(self, [s.get("embedding") for s in segments])
            return _mean(vectors, None, self.name)
        parts = ready.parts or (ready,)
        keys = ["textEmbedding" if p.is_text else "imageEmbedding" for p in parts]
        missing = [k for k in keys if k not in prediction]
        if missing:
            raise InvalidResponseError(f"prediction lacks {missing}", provider=self.name)
        vectors = self.finish([prediction[k] for k in keys], len(keys))
        return vectors[0] if len(vectors) == 1 else _mean(vectors, ready.weights, self.name)

    def is_auth_error(self, response: requests.Response) -> bool:
        return _google.is_auth_error(response)

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        return _google.describe_error(response)

    def retry_after(self, response: requests.Response) -> float | None:
        return _google.retry_delay(response)

    def _warn_truncated(self) -> None:
        if self._warned_long_text:
            return
        self._warned_long_text = True
        warnings.warn(
            f"vertex: {self.model} truncated an input that was over its token limit (warned once)",
            TextTooLongWarning,
            stacklevel=2,
        )

    def _warn_if_long(self, text: str) -> None:
        if self._warned_long_text or estimate_tokens(text) <= TEXT_TOKEN_LIMIT:
            return
        self._warned_long_text = True
        warnings.warn(
            f"vertex: a text of about {estimate_tokens(text)} tokens is over multimodalembedding's "
            f"{TEXT_TOKEN_LIMIT}-token limit; the server silently shortens it (warned once)",
            TextTooLongWarning,
            stacklevel=4,
        )


def _fill(instance: dict[str, Any], ready: Ready, interval: float) -> None:
    """Put one item (a text, an image, a video clip) into its place in a ``:predict`` instance."""
    if ready.text is not None:
        instance["text"] = ready.text
    elif ready.kind == "video":
        video: dict[str, Any] = (
            {"gcsUri": ready.gcs_uri}
            if ready.gcs_uri is not None
            else {"bytesBase64Encoded": base64.b64encode(ready.media or b"").decode("ascii")}
        )
        if ready.start is not None and ready.end is not None:
            start, end = math.floor(ready.start), max(math.ceil(ready.end), math.floor(ready.start) + 1)
            # One segment per item: the interval spans the clip (at least Vertex's minimum of 4 s).
            video["videoSegmentConfig"] = {
                "startOffsetSec": start,
                "endOffsetSec": end,
                "intervalSec": max(MIN_INTERVAL, end - start),
            }
        else:
            video["videoSegmentConfig"] = {"intervalSec": max(MIN_INTERVAL, math.ceil(interval))}
        instance["video"] = video
    elif ready.gcs_uri is not None:
        instance["image"] = {"gcsUri": ready.gcs_uri}
    elif ready.image is not None:
        instance["image"] = {
            "bytesBase64Encoded": base64.b64encode(ready.image.data).decode("ascii"),
            "mimeType": ready.image.media_type,
        }


def _next_segment(batch: Sequence[Item], item: Item, window: float) -> bool:
    """Whether ``item`` is the next segment of the video the segments in ``batch`` come from, so that one request
    with ``intervalSec`` = their length returns them all: same file, whole-second offsets, consecutive, all of
    one length but the last (which may be shorter), within one request's window."""
    clips = [b for b in batch if isinstance(b, VideoItem)]
    if not isinstance(item, VideoItem) or len(clips) != len(batch):
        return False
    first = clips[0]
    same = item.raw is first.raw or (isinstance(item.raw, pathlib.Path) and item.raw == first.raw)
    if not same or item.gcs_uri != first.gcs_uri:
        return False
    spans: list[tuple[float, float]] = []
    for clip in [*clips, item]:
        if clip.start is None or clip.end is None or float(clip.start) != int(clip.start):
            return False
        spans.append((clip.start, clip.end))
    length = spans[0][1] - spans[0][0]
    start, end = spans[-1]
    return (
        length >= MIN_INTERVAL
        and all(b - a == length for a, b in spans[:-1])
        and start == spans[-2][1]
        and end - start <= length
        and end - spans[0][0] <= window
    )


def _fill_segments(instance: dict[str, Any], batch: Sequence[Ready]) -> None:
    """One video instance whose intervals are the segments of ``batch`` (see :func:`_next_segment`)."""
    first, last = batch[0], batch[-1]
    start, length = int(first.start or 0), int((first.end or 0) - (first.start or 0))
    _fill(instance, first, length)
    instance["video"]["videoSegmentConfig"] = {
        "startOffsetSec": start,
        "endOffsetSec": math.ceil(last.end or 0),
        "intervalSec": max(MIN_INTERVAL, length),
    }


def _finish_video(provider: VertexProvider, vectors: list[Any]) -> list[np.ndarray]:
    """Video vectors are 1408-d whatever ``dimensions`` says (checked before sending): normalised, never cut."""
    from .base import normalise

    out = []
    for raw in vectors:
        try:
            vec = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidResponseError("a video embedding is not a list of numbers", provider=provider.name) from exc
        if vec.shape != (VIDEO_DIMENSIONS,):
            raise InvalidResponseError(f"a video embedding has shape {vec.shape}", provider=provider.name)
        out.append(normalise(vec, provider.name))
    return out


def _mean(vectors: Sequence[np.ndarray], weights: tuple[float, ...] | None, name: str) -> np.ndarray:
    from .base import normalise

    total = np.zeros(vectors[0].shape, dtype=np.float64)
    for weight, vec in zip(weights or tuple(1.0 for _ in vectors), vectors, strict=True):
        total += weight * vec.astype(np.float64)
    return normalise(total.astype(np.float32), name)


def location_host(location: str) -> str:
    """Vertex's host for ``location``: global, a multi-region (``us``, ``eu``) or a region."""
    if location == "global":
        return "aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"aiplatform.{location}.rep.googleapis.com"
    return f"{location}-aiplatform.googleapis.com"


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning estimate of WordPiece tokens: words, with long words counted as several."""
    return sum(max(1, len(w) // 6 + 1) if w.isalnum() else 1 for w in re.findall(r"\w+|[^\w\s]", text))


def _default_credentials(env_var: str) -> tuple[Any, str | None]:
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError as exc:
        raise ConfigurationError(
            f"vertex: no API key and google-auth is not installed; set {env_var} or pass api_key=..., "
            "or install mmembed[vertex] for Application Default Credentials"
        ) from exc
    try:
        creds, project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            f"vertex: no credentials; set {env_var} or pass api_key=..., pass credentials=..., "
            "or run `gcloud auth application-default login`"
        ) from exc
    return creds, project
