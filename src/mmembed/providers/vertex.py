"""Google Vertex AI ``multimodalembedding@001`` over REST ``:predict`` (the Python SDK class is deprecated).

One instance per request, as the online endpoint documents; an instance may carry one text **and** one
image, and then both embeddings come back, so a mixed stream pairs a text with an image per request and
needs half the requests. ``parameters.dimension`` sits at the top level of the body. Images go as
``bytesBase64Encoded`` JPEG/PNG (never WebP) or ``gcsUri``; http(s) URLs are downloaded here, under the
download policy, because the API cannot fetch them. Auth: an API key in the ``x-goog-api-key`` header
(never in the URL), else Application Default Credentials through google-auth, refreshed as they expire.
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
from .base import ModelInfo, Provider, ProviderOptions, Ready, Task, json_body

__all__ = ["TextTooLongWarning", "VertexProvider"]

MODELS = {
    "multimodalembedding@001": ModelInfo(
        "multimodalembedding@001", 1408, image_side=512, dimension_choices=(128, 256, 512, 1408)
    ),
}
TEXT_TOKEN_LIMIT = 32
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class TextTooLongWarning(UserWarning):
    """A text is likely over Vertex's 32-token limit; the server silently shortens it."""


class VertexProvider(Provider):
    """Google Vertex AI: multimodalembedding@001 (1408-d; 128/256/512); an API key or ADC."""

    name: ClassVar[str] = "vertex"
    title: ClassVar[str] = "Vertex"
    option_names: ClassVar[tuple[str, ...]] = ("model", "project_id", "location", "credentials")
    extra_keys: ClassVar[tuple[str, ...]] = ("project_id", "location")
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
    ) -> None:
        self.location = location or os.environ.get("GOOGLE_CLOUD_LOCATION") or "us-central1"
        host = "aiplatform.googleapis.com"
        if self.location != "global":
            host = f"{self.location}-{host}"
        if options.base_url is None:
            options = replace(options, base_url=f"https://{host}")
        super().__init__(options)
        self.model = model or "multimodalembedding@001"
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
        if not self.project_id:
            raise ConfigurationError(
                "vertex: no project; set GOOGLE_CLOUD_PROJECT or pass project_id=..."
            )
        self._warned_long_text = False

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", project_id={self.project_id!r}, location={self.location!r})"

    def model_names(self) -> dict[str, str]:
        return {"model": self.model}

    def image_model(self) -> ModelInfo:
        return self.info

    @property
    def endpoint(self) -> str:
        return (
            f"{self.base_url}/v1/projects/{self.project_id}/locations/{self.location}"
            f"/publishers/google/models/{self.model}:predict"
        )

    def route(self, item: Item) -> str:
        return "instance"

    def cap(self, route: str) -> int:
        return 2

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        # One instance: at most one text and one image.
        return not any(type(b) is type(item) for b in batch)

    def prepare(self, item: Item) -> Ready:
        if isinstance(item, TextItem):
            self._warn_if_long(item.text)
        return super().prepare(item)

    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
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
        """401/403, and Google's answer to a bad API key: 400 INVALID_ARGUMENT with reason API_KEY_INVALID."""
        if super().is_auth_error(response):
            return True
        if response.status_code != 400:
            return False
        try:
            details = response.json()["error"]["details"]
        except (ValueError, KeyError, TypeError):
            return False
        return isinstance(details, list) and any(
            isinstance(d, dict) and d.get("reason") == "API_KEY_INVALID" for d in details
        )

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        request_id = response.headers.get("x-request-id")
        try:
            error = response.json().get("error", {})
            return f"{error.get('status', 'ERROR')}: {error.get('message', '')}".strip(), request_id
        except (ValueError, AttributeError):
            return f"HTTP {response.status_code} {response.reason or ''}".strip(), request_id

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
