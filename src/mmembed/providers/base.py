"""The provider contract: declared capabilities, a wire format, and the behaviour derived from them.

A provider module states its limits (:class:`ModelInfo`, the class attributes of :class:`Provider`) and
implements three small methods: :meth:`Provider.route` (which endpoint an item goes to),
:meth:`Provider.cap` (how many items one request may carry) and :meth:`Provider.send` (one request on the
wire). Everything else — preparing images to the model's input size, downloading what the server cannot
fetch, batching, truncating and normalising vectors — is derived here, so a fourth provider is one file.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import requests

from ..download import DownloadPolicy, download, download_session
from ..errors import ConfigurationError, InputError, InvalidResponseError
from ..images import EncodedImage, ImageSpec, prepare_image
from ..inputs import DocumentItem, InterleavedItem, Item, MediaItem, PageImage, TextItem
from ..mediainfo import MediaLimits
from ..transport import RateLimiter, RetryPolicy, Transport, default_retry_after

__all__ = ["ALL_KINDS", "TEXT_IMAGE", "ModelInfo", "Provider", "ProviderOptions", "Ready", "Task", "normalise"]

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
    dimension_choices: tuple[int, ...] | None = None  # the only sizes the API accepts (Vertex)
    matryoshka: bool = True  # a truncated, re-normalised prefix is still a good vector
    max_batch: int | None = None  # per-request input cap, when it differs from the provider default
    max_side: int | None = None  # longest side worth uploading, if the model caps it too
    known: bool = True


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


class Provider(ABC):
    """Base class of the three providers; subclasses declare capabilities and speak one wire format."""

    name: ClassVar[str]
    title: ClassVar[str]  # names the adapter classes: f"{title}MultimodalEmbeddingFunction", ...
    env_var: ClassVar[str]  # default environment variable holding the key
    fallback_env_vars: ClassVar[tuple[str, ...]] = ()  # read, in order, when env_var is unset
    # Keyword arguments of __init__ beyond ``options`` (names of mmembed.options.EmbedderOptions).
    option_names: ClassVar[tuple[str, ...]] = ("model",)
    model_keys: ClassVar[tuple[str, ...]] = ("model",)  # persisted in a Chroma config; frozen once stored
    extra_keys: ClassVar[tuple[str, ...]] = ()  # other persisted options (instance attributes of the same name)
    default_base_url: ClassVar[str]
    # Hosts the provider serves its API from (``*`` is one DNS label): a function rebuilt from a stored config
    # may send the key there (over https), besides the host of a literal default_base_url (see mmembed._trust).
    official_hosts: ClassVar[tuple[str, ...]] = ()
    image_formats: ClassVar[frozenset[str]]  # upload formats the API accepts
    server_fetches_urls: ClassVar[bool] = False  # the API downloads http(s) image URLs itself
    accepts_gcs: ClassVar[bool] = False
    default_concurrency: ClassVar[int] = 4
    default_requests_per_minute: ClassVar[float | None] = None
    # The span the provider counts requests over: its quota is ``requests_per_minute * rate_window / 60``
    # in any such span. Bursts of ``max_concurrency`` go out at once; longer runs keep the average rate.
    rate_window: ClassVar[float] = 60.0
    key_required: ClassVar[bool] = True
    # Item kinds the models take natively (text, image, pdf, video, audio, interleaved): ``kinds`` for models not
    # named in ``model_kinds``. The embedder routes by these and applies the named fallbacks
    # (:mod:`mmembed.fallbacks`) to the rest; a kind neither covers is refused, naming the models that take it.
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE
    model_kinds: ClassVar[Mapping[str, frozenset[str]]] = {}
    video_clips: ClassVar[bool] = False  # the API embeds a time range of a video file (Vertex videoSegmentConfig)

    def __init__(self, options: ProviderOptions) -> None:
        self.options = options
        names = (options.api_key_env_var,) if options.api_key_env_var else (self.env_var, *self.fallback_env_vars)
        found = next((name for name in names if os.environ.get(name)), None)
        self.api_key_env_var = found or names[0]
        self._api_key = options.api_key or (os.environ.get(found) if found else None)
        if self._api_key is None and self.key_required:
            raise ConfigurationError(
                f"{self.name}: no API key; set the {' or '.join(names)} environment variable "
                "or pass api_key=... (or api_key_env_var=... to read another variable)"
            )
        self.base_url = (options.base_url or self.default_base_url).rstrip("/")
        self.concurrency = options.max_concurrency or self.default_concurrency
        if self.concurrency < 1:
            raise ConfigurationError(f"{self.name}: max_concurrency must be at least 1")
        rpm = options.requests_per_minute or self.default_requests_per_minute
        self.transport = Transport(
            self.name,
            timeout=options.timeout,
            retry=RetryPolicy(max_retries=max(0, options.max_retries)),
            limiter=options.rate_limiter or RateLimiter(rpm, window=self.rate_window, burst=self.concurrency),
            pool_size=self.concurrency,
            describe_error=self.describe_error,
            is_auth_error=self.is_auth_error,
            retry_after=self.retry_after,
        )
        # The caller's timeout bounds client-side downloads too (never above the policy's own default).
        self.download_policy = DownloadPolicy(
            allow_private=options.allow_private_urls, timeout=min(options.timeout, DownloadPolicy.timeout)
        )
        self._downloads: requests.Session | None = None  # made on the first download, on a worker thread
        self._download_lock = threading.Lock()
        self.dimensions = options.dimensions

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(models={self.model_names()!r}, dimensions={self.dimensions!r}, "
            f"base_url={self.base_url!r}, api_key_env_var={self.api_key_env_var!r})"
        )

    # -- what a subclass declares -------------------------------------------------------------------
    @abstractmethod
    def model_names(self) -> dict[str, str]:
        """The model(s) in use, by role (``{"model": ...}`` or ``{"text_model": ..., "vision_model": ...}``)."""

    @abstractmethod
    def image_model(self) -> ModelInfo:
        """The model that embeds images (its input size decides how far images are shrunk)."""

    @abstractmethod
    def route(self, item: Item) -> str:
        """Which request kind (endpoint + encoding) an item travels in."""

    @abstractmethod
    def cap(self, route: str) -> int:
        """How many items one request of ``route`` may carry."""

    @abstractmethod
    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        """One request: exactly one raw vector per item of ``batch``, in batch order."""

    def indexed_parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        """A parser for `{"data": [{"index", "embedding"}]}` answers (Jina's, Voyage's): see :func:`indexed_data`."""

        def parse(response: requests.Response) -> list[np.ndarray]:
            return self.finish(indexed_data(response, self.name, expected), expected)

        return parse

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """Message and request id from an error response in this provider's format."""
        request_id = response.headers.get("x-request-id")
        try:
            body: Any = response.json()
        except ValueError:
            return f"HTTP {response.status_code} {response.reason or ''}".strip(), request_id
        detail = body.get("detail") if isinstance(body, dict) else None
        return (str(detail) if detail else f"HTTP {response.status_code}"), request_id

    def is_auth_error(self, response: requests.Response) -> bool:
        """Whether an error response means the credentials were refused (401/403; never retried)."""
        return response.status_code in (401, 403)

    def retry_after(self, response: requests.Response) -> float | None:
        """Seconds an error response asks the client to wait before retrying (default: ``Retry-After``)."""
        return default_retry_after(response)

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        """Whether ``item`` may join an open batch of its route (default: under the count cap)."""
        return len(batch) < self.cap(route)

    def model_for(self, item: Item) -> str:
        """The model that embeds ``item`` (part of its cache key)."""
        return next(iter(self.model_names().values()))

    def task_key(self, item: Item, task: Task) -> str:
        """The part of a cache key that depends on the task (override when images ignore it)."""
        return task

    def output_dimensions(self) -> int | None:
        """The size of every vector this provider returns (None until known, for unknown models)."""
        return self.dimensions

    def native_kinds(self) -> frozenset[str]:
        """The item kinds the model in use takes natively."""
        return self.model_kinds.get(next(iter(self.model_names().values())), self.kinds)

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        """Whether the model embeds ``item`` as one content (else its parts are averaged)."""
        native = self.native_kinds()
        return "interleaved" in native and all(part.kind in native for part in item.parts)

    def clips_video(self) -> bool:
        """Whether the model embeds a time range of a video file (Vertex @001's videoSegmentConfig)."""
        return self.video_clips

    def reads_page_text(self) -> bool:
        """Whether a PDF page rendered for this model also yields its text layer as a text item."""
        return True

    @classmethod
    def models_taking(cls, kind: str) -> list[str]:
        """The known models of this provider that take ``kind`` natively (for error messages)."""
        if cls.model_kinds:
            return [model for model, kinds in cls.model_kinds.items() if kind in kinds]
        return [cls.name] if kind in cls.kinds else []

    # -- derived behaviour --------------------------------------------------------------------------
    def image_spec(self) -> ImageSpec:
        side = self.options.image_side or self.image_model().image_side
        return ImageSpec(min_side=side, formats=self.image_formats, max_side=self.image_model().max_side)

    def prepare(self, item: Item) -> Ready:
        """Make one item wire-ready: shrink and encode local images, download what the server can't fetch."""
        if isinstance(item, TextItem):
            return Ready(text=item.text, kind="text")
        if isinstance(item, InterleavedItem):
            parts = tuple(self.prepare(part) for part in item.parts)
            return Ready(kind="interleaved", parts=parts, weights=item.weights)
        if isinstance(item, MediaItem):
            return self.prepare_media(item)
        if isinstance(item.raw, PageImage):
            from ..documents import render_page

            page, limits = item.raw, self.options.media_limits
            data = page.document.data(limits.max_pdf_bytes)
            rendered = render_page(data, page.page, self.image_spec().min_side, limits.render_max_pixels)
            return Ready(image=prepare_image(rendered, self.image_spec()))
        if item.url is not None:
            if self.server_fetches_urls:
                return Ready(url=item.url)
            data = download(item.url, self.download_policy, self._download_session())
            return Ready(image=prepare_image(data, self.image_spec()))
        if item.gcs_uri is not None:
            if not self.accepts_gcs:
                raise InputError(f"{self.name} cannot read gs:// URIs (only Vertex can)")
            return Ready(gcs_uri=item.gcs_uri)
        if item.raw is None:
            raise InputError("image item has no content")
        return Ready(image=prepare_image(item.raw, self.image_spec()))

    def prepare_media(self, item: MediaItem) -> Ready:
        """A PDF (or page range of one), video or audio in wire form: local bytes within the caps, or gs://."""
        limits = self.options.media_limits
        start: float | None = getattr(item, "start", None)
        end: float | None = getattr(item, "end", None)
        if item.gcs_uri is not None:
            if not self.accepts_gcs:
                raise InputError(f"{self.name} cannot read gs:// URIs")
            return Ready(gcs_uri=item.gcs_uri, kind=item.kind, media_type=item.media_type, start=start, end=end)
        if item.url is not None:
            raise InputError(
                f"{self.name} cannot fetch {item.kind} URLs; download the file and pass its path (or a gs:// URI)"
            )
        if isinstance(item, DocumentItem):
            data = item.data(limits.max_pdf_bytes)
            if item.pages is not None:
                from ..documents import extract_pages

                data = extract_pages(data, *item.pages)
            return Ready(kind="pdf", media=data, media_type="application/pdf")
        data = item.data(limits.max_media_bytes)
        return Ready(kind=item.kind, media=data, media_type=item.media_type, start=start, end=end)

    def finish(self, vectors: Sequence[Any], expected: int) -> list[np.ndarray]:
        """Check count and shape of a response's vectors, truncate to ``dimensions`` and normalise."""
        if len(vectors) != expected:
            raise InvalidResponseError(
                f"expected {expected} embeddings, got {len(vectors)}", provider=self.name
            )
        out = []
        for raw in vectors:
            try:
                vec = np.asarray(raw, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InvalidResponseError("an embedding is not a list of numbers", provider=self.name) from exc
            if vec.ndim != 1 or vec.size == 0:
                raise InvalidResponseError("an embedding is not a flat vector", provider=self.name)
            if self.dimensions is not None:
                if vec.size < self.dimensions:
                    raise InvalidResponseError(
                        f"embedding has {vec.size} values, fewer than the {self.dimensions} asked for",
                        provider=self.name,
                    )
                vec = vec[: self.dimensions]
            out.append(normalise(vec, self.name))
        sizes = {v.size for v in out}
        if len(sizes) > 1:
            raise InvalidResponseError(f"embeddings of mixed sizes {sorted(sizes)}", provider=self.name)
        return out

    def check_dimensions(self, model: ModelInfo) -> None:
        """Refuse a ``dimensions`` the model cannot give, with a message that says what it can."""
        dims = self.dimensions
        if dims is None:
            return
        if dims < 1:
            raise ConfigurationError(f"{self.name}: dimensions must be positive, got {dims}")
        if model.dimension_choices is not None and dims not in model.dimension_choices:
            raise ConfigurationError(
                f"{self.name}: {model.name} supports dimensions {list(model.dimension_choices)}, not {dims}"
            )
        if model.dimensions is not None and dims > model.dimensions:
            raise ConfigurationError(f"{self.name}: {model.name} gives at most {model.dimensions} dimensions")
        if model.known and not model.matryoshka and dims != model.dimensions:
            raise ConfigurationError(
                f"{self.name}: {model.name} is not trained for truncation; omit dimensions "
                f"(it gives {model.dimensions})"
            )
        if model.api_dimensions is not None and not model.api_dimensions[0] <= dims <= model.api_dimensions[1]:
            low, high = model.api_dimensions
            raise ConfigurationError(f"{self.name}: {model.name} supports dimensions {low}-{high}")

    def _download_session(self) -> requests.Session:
        with self._download_lock:
            if self._downloads is None:
                self._downloads = download_session(self.download_policy)
            return self._downloads

    def close(self) -> None:
        self.transport.close()
        with self._download_lock:
            if self._downloads is not None:
                self._downloads.close()
                self._downloads = None


def normalise(vec: np.ndarray, provider: str) -> np.ndarray:
    """Unit-normalise ``vec`` (float32); a zero or non-finite vector is an untrustworthy response."""
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidResponseError("an embedding is zero or not finite", provider=provider)
    return (vec / norm).astype(np.float32, copy=False)


def indexed_data(response: requests.Response, provider: str, expected: int) -> list[Any]:
    """The raw vectors of a ``{"data": [{"index": i, "embedding": [...]}, ...]}`` answer, put in order by index.

    Jina's and Voyage's shape. The indexes must be JSON integers (not "1", 1.5 or true) and, when the count
    is right, exactly 0..n-1: a vector is never shifted onto another item.
    """
    body = json_body(response, provider)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise InvalidResponseError("response has no 'data' list", provider=provider, body=response.text)
    try:
        ordered = sorted(data, key=_index)
        indexes = [_index(d) for d in ordered]
        vectors = [d["embedding"] for d in ordered]
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
