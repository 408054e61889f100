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
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import requests

from ..errors import ConfigurationError, InvalidResponseError
from ..inputs import Item, TextItem
from . import _google
from .base import ModelInfo, Provider, ProviderOptions, Ready, Task, json_body

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
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class TextTooLongWarning(UserWarning):
    """A text is likely over Vertex's 32-token limit; the server silently shortens it."""


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
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})
    accepts_gcs: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = 120
    rate_window: ClassVar[float] = 60.0  # a per-minute quota per project and region
    key_required: ClassVar[bool] = False

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
            options = replace(options, base_url=f"https://{_host(self.location)}")
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
        return "content" if self.embed_content else "instance"

    def cap(self, route: str) -> int:
        return 1 if self.embed_content else 2

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        if self.embed_content:
            return not batch
        # One instance: at most one text and one image.
        return not any(type(b) is type(item) for b in batch)

    def task_key(self, item: Item, task: Task) -> str:
        if self.embed_content:  # prompt prefixes on texts, media bare (as on the Gemini API)
            if not isinstance(item, TextItem):
                return "media"
            return f"{task}:{self._template(task)}"
        return task

    def prepare(self, item: Item) -> Ready:
        if isinstance(item, TextItem) and not self.embed_content:
            self._warn_if_long(item.text)
        return super().prepare(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        if self.embed_content:
            return self._embed_content(batch, task)
        instance: dict[str, Any] = {}
        for ready in batch:
            if ready.text is not None:
                instance["text"] = ready.text
            elif ready.gcs_uri is not None:
                instance["image"] = {"gcsUri": ready.gcs_uri}
            elif ready.image is not None:
                instance["image"] = {
                    "bytesBase64Encoded": base64.b64encode(ready.image.data).decode("ascii"),
                    "mimeType": ready.image.media_type,
                }
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
            keys = ["textEmbedding" if r.is_text else "imageEmbedding" for r in batch]
            missing = [k for k in keys if k not in prediction]
            if missing:
                raise InvalidResponseError(f"prediction lacks {missing}", provider=self.name)
            return self.finish([prediction[k] for k in keys], len(batch))

        return parse

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


def _host(location: str) -> str:
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
