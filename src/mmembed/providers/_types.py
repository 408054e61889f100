"""The data that passes between providers, model families and the pipeline: models, options, wire-ready items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import requests

from ..errors import InvalidResponseError
from ..images import EncodedImage
from ..mediainfo import MediaLimits

__all__ = [
    "ALL_KINDS",
    "TEXT_IMAGE",
    "ModelInfo",
    "ProviderOptions",
    "Ready",
    "Task",
    "indexed_data",
    "json_body",
    "normalise",
]

Task = Literal["document", "query"]
TEXT_IMAGE: frozenset[str] = frozenset({"text", "image"})
ALL_KINDS: frozenset[str] = frozenset({"text", "image", "pdf", "video", "audio", "interleaved"})


@dataclass(frozen=True)
class ModelInfo:
    """What we know about one model. Unknown model names get a permissive default and pass through."""

    name: str
    dimensions: int | None  # native output size; None when unknown (learned from the first response)
    image_side: int = 512  # shortest side worth uploading (the model's input, plus any margin)
    api_dimensions: tuple[int, int] | None = None  # inclusive range the API itself can truncate to
    dimension_choices: tuple[int, ...] | None = None  # the only sizes the API accepts
    matryoshka: bool = True  # a truncated, re-normalised prefix is still a good vector
    max_batch: int | None = None  # per-request input cap, when it differs from the provider default
    max_side: int | None = None  # longest side worth uploading, if the model caps it too
    known: bool = True
    kinds: frozenset[str] | None = None  # item kinds it takes natively (None: its family's default)
    multivector: int | None = None  # width of each row of its multi-vector output (None: it has none)


@dataclass(frozen=True)
class ProviderOptions:
    """Options every provider takes (see :class:`mmembed.Embedder` for their meaning)."""

    api_key: str | None = field(default=None, repr=False)
    api_key_env_var: str | None = None
    base_url: str | None = None
    dimensions: int | None = None
    timeout: float = 60.0
    max_retries: int = 5
    max_concurrency: int | None = None
    requests_per_minute: float | None = None
    allow_private_urls: bool = False
    image_side: int | None = None
    rate_limiter: Any = None  # an object with acquire() and pause(seconds); default: a RateLimiter of our own
    media_limits: MediaLimits = field(default_factory=MediaLimits)


@dataclass(frozen=True, eq=False)
class Ready:
    """One item in wire-ready form: one of text, image bytes, media bytes, an http(s) URL or a gs:// URI, or
    the ``parts`` of an interleaved item. ``kind`` says what it is; ``start``/``end`` bound a video clip."""

    text: str | None = None
    image: EncodedImage | None = None
    url: str | None = None
    gcs_uri: str | None = None
    kind: str = "image"
    media: bytes | None = field(default=None, repr=False)
    media_type: str | None = None
    start: float | None = None
    end: float | None = None
    parts: tuple[Ready, ...] = ()
    weights: tuple[float, ...] | None = None  # of an interleaved item's parts

    @property
    def is_text(self) -> bool:
        return self.text is not None


def normalise(vec: np.ndarray, provider: str) -> np.ndarray:
    """Unit-normalise ``vec`` (float32); a zero or non-finite vector is an untrustworthy response."""
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidResponseError("an embedding is zero or not finite", provider=provider)
    return (vec / norm).astype(np.float32, copy=False)


def indexed_data(response: requests.Response, provider: str, expected: int, field: str = "embedding") -> list[Any]:
    """The raw vectors of a ``{"data": [{"index": i, "embedding": [...]}, ...]}`` answer, put in order by index.

    The OpenAI shape several APIs share (``field`` names the vectors: some multi-vector answers use ``"embeddings"``).
    The indexes must be JSON integers (not "1", 1.5 or true) and, when the count is right, exactly 0..n-1: a
    vector is never shifted onto another item.
    """
    body = json_body(response, provider)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise InvalidResponseError("response has no 'data' list", provider=provider, body=response.text)
    try:
        ordered = sorted(data, key=_index)
        indexes = [_index(d) for d in ordered]
        vectors = [d[field] for d in ordered]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidResponseError("malformed 'data' entries", provider=provider) from exc
    if len(data) == expected and indexes != list(range(expected)):
        raise InvalidResponseError("response indexes do not match the inputs", provider=provider)
    return vectors


def _index(entry: Any) -> int:
    index = entry["index"]
    if type(index) is not int:
        raise TypeError(f"index {index!r} is not an integer")
    return index


def json_body(response: requests.Response, provider: str) -> Any:
    """The JSON body of a 2xx response, or InvalidResponseError (e.g. a proxy's HTML page)."""
    try:
        return response.json()
    except ValueError as exc:
        raise InvalidResponseError(
            f"response is not JSON (Content-Type {response.headers.get('Content-Type', '?')})",
            provider=provider,
            status=response.status_code,
            body=response.text,
        ) from exc
