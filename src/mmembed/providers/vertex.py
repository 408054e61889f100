"""Google Vertex AI: ``multimodalembedding@001`` over REST ``:predict``, the Content family over ``:embedContent``.

One provider, two model families. ``multimodalembedding@001`` (:class:`MultimodalEmbedding`, here) takes one
instance per request; an instance may carry one text **and** one image, and then both embeddings come back, so
a mixed stream pairs a text with an image per request and needs half the requests. ``parameters.dimension``
sits at the top level of the body. Images go as ``bytesBase64Encoded`` JPEG/PNG (never WebP) or ``gcsUri``;
http(s) URLs are downloaded here, under the download policy, because the API cannot fetch them.

The Content-based embedding models (all but the text-only 001 of that line, which takes ``:predict``) are the
shared family of :mod:`._gemini_embedding`, hosted with one ``content`` per ``:embedContent`` call (Vertex has no
batch method for them), more requests in flight, options in ``embedContentConfig`` and the ``global`` location (host
``aiplatform.googleapis.com``) by default. With an API key and no project, requests go to the express-mode path
(``/v1beta1/publishers/google/models/…``), as Google's SDK sends them.

Auth: an API key in the ``x-goog-api-key`` header (never in the URL), else Application Default Credentials
through google-auth, refreshed as they expire.
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
from typing import Annotated, Any, ClassVar

import numpy as np
import requests

from ..errors import ConfigurationError, InputError, InvalidResponseError, TextTooLongWarning
from ..inputs import InterleavedItem, Item, TextItem, VideoItem
from ..options import Doc, ModelOptions
from ._gemini_embedding import GeminiEmbedding
from ._google import GoogleErrors
from .base import Hosting, ModelFamily, ModelInfo, Provider, ProviderOptions, Ready, Task, json_body, normalise

__all__ = ["MultimodalEmbedding", "TextTooLongWarning", "VertexOptions", "VertexProvider", "location_host"]

DEFAULT_LOCATION = "us-central1"
EXPRESS_API_VERSION = "v1beta1"  # the version Google's SDK uses for express mode (API key, no project)
TEXT_TOKEN_LIMIT = 32
VIDEO_DIMENSIONS = 1408  # video vectors are always 1408-d: parameters.dimension applies to text and image only
MIN_INTERVAL = 4  # intervalSec below 4 is INVALID_ARGUMENT
KINDS = frozenset({"text", "image", "video", "interleaved"})
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class VertexOptions(ModelOptions, total=False):
    """Vertex's own options: where its models run and whose credentials pay."""

    project_id: Annotated[str | None, Doc("Google Cloud project (default: GOOGLE_CLOUD_PROJECT, else ADC's).")]
    location: Annotated[str | None, Doc("Google Cloud location (default: GOOGLE_CLOUD_LOCATION, else the model's).")]
    credentials: Annotated[
        Any, Doc("google-auth credentials to use instead of an API key or ADC.", secret=True, local=True)
    ]


# Vertex's text-embedding models take {"content": ...} instances on :predict: not this family's request.
TEXT_PREDICT_MODELS = re.compile(
    r"^(text-embedding-|text-multilingual-embedding-|textembedding-gecko|gemini-embedding-001$)"
)


class MultimodalEmbedding(ModelFamily):
    """multimodalembedding@001 over ``:predict`` (1408-d; 128/256/512): one instance of a text, image or video."""

    models: ClassVar[dict[str, ModelInfo]] = {
        "multimodalembedding@001": ModelInfo(
            "multimodalembedding@001", 1408, image_side=512, dimension_choices=(128, 256, 512, 1408), kinds=KINDS
        ),
    }
    kinds: ClassVar[frozenset[str]] = KINDS
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    accepts_gcs: ClassVar[bool] = True
    video_clips: ClassVar[bool] = True
    method: ClassVar[str] = "predict"

    def configure(self, **settings: Any) -> None:
        super().configure(**settings)
        self._warned_long_text = False
        if TEXT_PREDICT_MODELS.match(self.model):
            from . import PROVIDERS  # here: the registry imports this module

            elsewhere = [f"Embedder({name!r}, model={self.model!r})" for name, cls in PROVIDERS.items()
                         if name != self.name and any(self.model in h.family.models for h in cls.hostings())]
            raise ConfigurationError(
                f"{self.name}: {self.model} is one of Vertex's text-embedding models, whose :predict request "
                "(instances of 'content') mmembed does not speak; embed texts with gemini-embedding-2 or "
                "multimodalembedding@001 here" + (f", or with {' or '.join(elsewhere)}" if elsewhere else "")
            )

    def route(self, item: Item) -> str:
        return "video" if isinstance(item, VideoItem) else "instance"

    def cap(self, route: str) -> int:
        if route == "video":  # consecutive segments of one video share a request (one per interval)
            return int(self.provider.options.media_limits.video_window // MIN_INTERVAL)
        return 2

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if route == "video":
            return not batch or _next_segment(batch, item, self.provider.options.media_limits.video_window)
        # One instance: at most one text and one image; a video or an interleaved pair goes alone.
        alone = (VideoItem, InterleavedItem)
        if isinstance(item, alone) or any(isinstance(b, alone) for b in batch):
            return not batch
        return not any(type(b) is type(item) for b in batch)

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        """One text and one image share an instance (two vectors come back, averaged by the weights)."""
        return sorted(part.kind for part in item.parts) == ["image", "text"]

    def prepare(self, item: Item) -> Ready:
        texts = item.parts if isinstance(item, InterleavedItem) else (item,)
        for part in texts:
            if isinstance(part, TextItem):
                self._warn_if_long(part.text)
        if isinstance(item, VideoItem) and self.dimensions not in (None, VIDEO_DIMENSIONS):
            raise InputError(
                f"{self.name}: video vectors are always {VIDEO_DIMENSIONS}-d, so a collection of {self.dimensions}-d "
                "vectors cannot hold them; omit dimensions= to embed video"
            )
        return super().prepare(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        instance: dict[str, Any] = {}
        if route == "video" and len(batch) > 1:
            _fill_segments(instance, batch)
        else:
            for ready in batch:
                for part in ready.parts or (ready,):
                    _fill(instance, part, self.provider.options.media_limits.video_interval)
        body: dict[str, Any] = {"instances": [instance]}
        if self.provider.options.dimensions is not None:
            body["parameters"] = {"dimension": self.provider.options.dimensions}
        return self.provider.post(f"/models/{self.model}:{self.method}", self._parser(batch), json=body)

    def _parser(self, batch: Sequence[Ready]) -> Callable[[requests.Response], list[np.ndarray]]:
        def parse(response: requests.Response) -> list[np.ndarray]:
            body = json_body(response, self.name)
            predictions = body.get("predictions") if isinstance(body, dict) else None
            if not isinstance(predictions, list) or len(predictions) != 1 or not isinstance(predictions[0], dict):
                raise InvalidResponseError("expected exactly one prediction", provider=self.name, body=response.text)
            prediction = predictions[0]
            if len(batch) > 1 and all(r.kind == "video" for r in batch):
                return self._segment_vectors(prediction, batch)
            return [self._prediction_vector(prediction, ready) for ready in batch]

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
        return _finish_video(self.name, [by_start[start] for start in starts])

    def _prediction_vector(self, prediction: dict[str, Any], ready: Ready) -> np.ndarray:
        """One item's vector from the prediction: its text/image embedding, a video's segments averaged (one
        segment when the request asked for one), an interleaved pair's two embeddings averaged."""
        if ready.kind == "video":
            segments = prediction.get("videoEmbeddings")
            if not isinstance(segments, list) or not segments or not all(isinstance(s, dict) for s in segments):
                raise InvalidResponseError("prediction lacks videoEmbeddings", provider=self.name)
            vectors = _finish_video(self.name, [s.get("embedding") for s in segments])
            return _mean(vectors, None, self.name)
        parts = ready.parts or (ready,)
        keys = ["textEmbedding" if p.is_text else "imageEmbedding" for p in parts]
        missing = [k for k in keys if k not in prediction]
        if missing:
            raise InvalidResponseError(f"prediction lacks {missing}", provider=self.name)
        vectors = self.finish([prediction[k] for k in keys], len(keys))
        return vectors[0] if len(vectors) == 1 else _mean(vectors, ready.weights, self.name)

    def _warn_if_long(self, text: str) -> None:
        if self._warned_long_text or estimate_tokens(text) <= TEXT_TOKEN_LIMIT:
            return
        self._warned_long_text = True
        warnings.warn(
            f"{self.name}: a text of about {estimate_tokens(text)} tokens is over {self.model}'s "
            f"{TEXT_TOKEN_LIMIT}-token limit; the server silently shortens it (warned once)",
            TextTooLongWarning,
            stacklevel=4,
        )


class VertexProvider(GoogleErrors, Provider):
    """Google Vertex AI: multimodalembedding@001 (1408-d; 128/256/512) or the Content family (3072-d); a key or ADC."""

    name: ClassVar[str] = "vertex"
    title: ClassVar[str] = "Vertex"
    env_var: ClassVar[str] = "GOOGLE_API_KEY"
    key_required: ClassVar[bool] = False  # Application Default Credentials otherwise
    config_env_vars: ClassVar[tuple[str, ...]] = ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION")
    default_base_url: ClassVar[str] = "https://{location}-aiplatform.googleapis.com"
    official_hosts: ClassVar[tuple[str, ...]] = (
        "*-aiplatform.googleapis.com", "aiplatform.googleapis.com", "aiplatform.*.rep.googleapis.com"
    )
    settings: ClassVar[type] = VertexOptions
    # The Content family: one item per request, so more in flight than @001's 4 (dynamic shared quota, no published
    # per-project figure: a 429 pauses every worker and is retried).
    families = (
        MultimodalEmbedding,
        Hosting(GeminiEmbedding, concurrency=8, requests_per_minute=600,
                wire={"batch": False, "config": "embedContentConfig", "location": "global", "express": True,
                      "gcs": True}),
    )
    default_model: ClassVar[str] = "multimodalembedding@001"
    emulator: ClassVar[tuple[str, ...]] = ("mmembed.testing.vertex:Vertex", "mmembed.testing.vertex:VertexGemini")
    test_options: ClassVar[Mapping[str, Any]] = {"project_id": "test-project"}
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = 120
    rate_window: ClassVar[float] = 60.0  # a per-minute quota per project and region
    project_id: str | None
    location: str
    _credentials: Any

    def __init__(self, options: ProviderOptions, **settings: Any) -> None:
        super().__init__(options, **settings)
        self._auth_lock = threading.Lock()
        adc_project = None
        if self._api_key is None and self._credentials is None:
            self._credentials, adc_project = _default_credentials(self.api_key_env_var)
        self.project_id = self.project_id or os.environ.get("GOOGLE_CLOUD_PROJECT") or adc_project
        express = self.hosting.wire.get("express") and self._api_key is not None
        if not self.project_id and not express:
            raise ConfigurationError("vertex: no project; set GOOGLE_CLOUD_PROJECT or pass project_id=...")

    def configure(self, **settings: Any) -> None:
        """The project (checked once the key is known), the location (the model family's default) and credentials."""
        self.project_id = settings.get("project_id")
        default = self.hosting.wire.get("location", DEFAULT_LOCATION)
        self.location = settings.get("location") or os.environ.get("GOOGLE_CLOUD_LOCATION") or default
        self._credentials = settings.get("credentials")

    def default_url(self) -> str:
        return f"https://{location_host(self.location)}"

    def url(self, path: str) -> str:
        """``/models/{m}:{method}`` at the project and location (express mode, with a key and no project, has none)."""
        if not self.project_id:
            return f"{self.base_url}/{EXPRESS_API_VERSION}/publishers/google{path}"
        return f"{self.base_url}/v1/projects/{self.project_id}/locations/{self.location}/publishers/google{path}"

    @property
    def endpoint(self) -> str:
        """The URL the model in use is called at."""
        return self.url(f"/models/{self.family.model}:{getattr(self.family, 'method', 'predict')}")

    @property
    def usage(self) -> dict[str, int]:
        """Prompt tokens by modality, summed over answered calls (what an image really costs; Content models)."""
        usage: dict[str, int] = getattr(self.family, "usage", {})
        return usage

    def headers(self) -> Mapping[str, str]:
        if self._api_key is not None:
            return {"x-goog-api-key": self._api_key}
        with self._auth_lock:
            creds = self._credentials
            if not creds.valid:
                from google.auth.transport.requests import Request

                creds.refresh(Request())
            return {"Authorization": f"Bearer {creds.token}"}

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", project_id={self.project_id!r}, location={self.location!r})"


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


def _finish_video(name: str, vectors: list[Any]) -> list[np.ndarray]:
    """Video vectors are 1408-d whatever ``dimensions`` says (checked before sending): normalised, never cut."""
    out = []
    for raw in vectors:
        try:
            vec = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidResponseError("a video embedding is not a list of numbers", provider=name) from exc
        if vec.shape != (VIDEO_DIMENSIONS,):
            raise InvalidResponseError(f"a video embedding has shape {vec.shape}", provider=name)
        out.append(normalise(vec, name))
    return out


def _mean(vectors: Sequence[np.ndarray], weights: tuple[float, ...] | None, name: str) -> np.ndarray:
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
