"""A model family: what its models take (capabilities) and what one request looks like (its wire shape).

A family serves every provider that hosts it: the provider (:class:`~mmembed.providers.base.Provider`) owns who
and where — identity, key, host, HTTP client, rate windows — and hands the family a :meth:`Provider.post` to send
with. The family declares its models (:class:`ModelInfo`: dimensions, image side, batch cap, kinds) and implements
:meth:`ModelFamily.send` (one request: exactly one vector per item, in order); the rest is derived here from the
declarations: how far images are shrunk, what is downloaded for a server that cannot fetch URLs, how vectors are
checked, truncated and normalised. A family that several providers host (one request shape over two APIs) reads
the hosting provider's switches from :attr:`ModelFamily.wire` (declared with :class:`Hosting`), never its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import requests

from ..download import download
from ..errors import ConfigurationError, InputError, InvalidResponseError, ProviderError, RefusedInputError
from ..images import ImageSpec, prepare_image
from ..inputs import DocumentItem, InterleavedItem, Item, MediaItem, PageImage, TextItem
from ..options import OptionSpec, specs_of
from ._types import TEXT_IMAGE, ModelInfo, Ready, Task, indexed_data, normalise

if TYPE_CHECKING:
    from .base import Provider

__all__ = ["Hosting", "ModelFamily"]

T = TypeVar("T")


@dataclass(frozen=True)
class Hosting:
    """How a provider hosts a family: limits that differ from the provider's defaults, and wire switches."""

    family: type[ModelFamily]
    concurrency: int | None = None  # requests in flight (default: the provider's)
    requests_per_minute: float | None = None  # (default: the provider's)
    wire: Mapping[str, Any] = field(default_factory=dict)  # read by the family as ``self.wire``
    models: tuple[str, ...] | None = None  # the family's ids this host serves (None: all it lists)

    def lists(self, model: str) -> bool:
        """Whether this host serves ``model`` (one of the family's ids it takes)."""
        return self.models is None or model in self.models


class ModelFamily(ABC):
    """Base class of model families: declared capabilities, one request shape, behaviour derived from them."""

    #: Known models and what we know of them; other names pass through with :meth:`unknown` 's guess.
    models: ClassVar[Mapping[str, ModelInfo]] = {}
    #: The family's own options (a ``TypedDict`` of ``Annotated[..., Doc(...)]``), taken by every host.
    settings: ClassVar[type | None] = None
    kinds: ClassVar[frozenset[str]] = TEXT_IMAGE  # what a model takes natively unless its ModelInfo says
    image_formats: ClassVar[frozenset[str]] = frozenset({"JPEG", "PNG"})  # upload formats the API accepts
    server_fetches_urls: ClassVar[bool] = False  # the API downloads http(s) image URLs itself
    accepts_gcs: ClassVar[bool] = False  # the API reads gs:// URIs (a host may say otherwise: wire["gcs"])
    video_clips: ClassVar[bool] = False  # the API embeds a time range of a video file
    audio_clips: ClassVar[bool] = False  # the model embeds a time range of an audio file
    #: The longest audio or video one request takes (None: MediaLimits'); where the model embeds a time range,
    #: longer media go in windows of this length, averaged.
    media_seconds: ClassVar[float | None] = None
    unknown_image_side: ClassVar[int] = 512

    def __init__(self, provider: Provider, model: str, wire: Mapping[str, Any], **settings: Any) -> None:
        self.provider = provider
        self.name = provider.name  # for errors: they name the provider the user chose
        self.model = model
        self.wire = wire
        self.info = self.models.get(provider.base_model(model)) or self.unknown(model)
        self.dimensions: int | None = provider.options.dimensions
        self.check_dimensions(self.info)
        if self.dimensions is None:
            self.dimensions = self.info.dimensions
        self.configure(**settings)

    @classmethod
    def serves(cls, model: str) -> bool:
        """Whether ``model`` belongs to this family (by default: one of :attr:`models`)."""
        return model in cls.models

    @classmethod
    def unknown(cls, model: str) -> ModelInfo:
        """What is assumed of a model this family does not list (it passes through to the API)."""
        return ModelInfo(model, None, image_side=cls.unknown_image_side, known=False)

    @classmethod
    def option_specs(cls) -> tuple[OptionSpec, ...]:
        return specs_of(cls.settings) if cls.settings is not None else ()

    def configure(self, **settings: Any) -> None:
        """Take the family's own options (declared in :attr:`settings`); the default stores them as attributes."""
        declared = {spec.name: spec for spec in self.option_specs()}
        for name, value in settings.items():
            if name not in declared:
                if value is None:  # another family's option, not given (an adapter passes every option)
                    continue
                raise ConfigurationError(f"{self.name}: {self.model} takes no {name}=")
            setattr(self, name, value if value is not None else declared[name].default)
        for name, spec in declared.items():
            if name not in settings:
                setattr(self, name, spec.default)

    @classmethod
    def models_taking(cls, kind: str) -> list[str]:
        """The listed models that take ``kind`` natively (for error messages)."""
        return [name for name, info in cls.models.items() if kind in (info.kinds or cls.kinds)]

    # -- what a family implements ---------------------------------------------------------------------
    @abstractmethod
    def send(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        """One request: exactly one unit vector per item of ``batch``, in batch order."""

    def send_multi(self, route: str, batch: Sequence[Ready], task: Task) -> list[np.ndarray]:
        """One multi-vector request: one ``(rows, width)`` array of unit rows per item, in batch order.

        Only a family with a model whose :class:`ModelInfo` declares ``multivector`` implements it.
        """
        raise ConfigurationError(f"{self.name}: {self.model} has no multi-vector output")

    def one_item(self, call: Callable[[], T]) -> T:
        """Run a request that carries one item: the API's 400 refuses that item, so it becomes a
        :class:`~mmembed.errors.RefusedInputError` (the embedder names the item). ``is_model_error`` says which
        400s are the model's (an unknown model id), not the item's."""
        try:
            return call()
        except ProviderError as err:
            if err.status == 400 and not isinstance(err, InvalidResponseError) and not self.is_model_error(err):
                raise RefusedInputError.of(err) from err
            raise

    def is_model_error(self, err: ProviderError) -> bool:
        """Whether a 400 is about the model asked for rather than the item (its message names the model)."""
        text = str(err).lower()
        return "model identifier" in text or "inference profile" in text or "model_name" in text

    def route(self, item: Item) -> str:
        """Which request kind (endpoint + encoding) an item travels in (default: one for all)."""
        return "default"

    def cap(self, route: str) -> int:
        """How many items one request of ``route`` may carry."""
        return self.info.max_batch or 1

    def fits(self, batch: Sequence[Item], item: Item, route: str) -> bool:
        """Whether ``item`` may join an open batch of its route (default: under the count cap)."""
        return len(batch) < self.cap(route)

    # -- capabilities, derived from the declarations --------------------------------------------------
    def model_names(self) -> dict[str, str]:
        """The model(s) in use, by option name (``{"model": ...}``)."""
        return {"model": self.model}

    def image_model(self) -> ModelInfo:
        """The model that embeds images (its input size decides how far images are shrunk)."""
        return self.info

    def model_for(self, item: Item) -> str:
        """The model that embeds ``item`` (part of its cache key)."""
        return self.model

    def task_key(self, item: Item, task: Task) -> str:
        """The part of a cache key that depends on the task (override when images ignore it)."""
        return task

    def native_kinds(self) -> frozenset[str]:
        """The item kinds the model in use takes natively."""
        return self.info.kinds or self.kinds

    def takes_interleaved(self, item: InterleavedItem) -> bool:
        """Whether the model embeds ``item`` as one content (else its parts are averaged)."""
        native = self.native_kinds()
        return "interleaved" in native and all(part.kind in native for part in item.parts)

    def clips_video(self) -> bool:
        """Whether the model embeds a time range of a video file."""
        return self.video_clips

    def clips_audio(self) -> bool:
        """Whether the model embeds a time range of an audio file."""
        return self.audio_clips

    def reads_gcs(self) -> bool:
        """Whether ``gs://`` URIs go to the API: the family's declaration, unless its host's ``wire`` says."""
        return bool(self.wire.get("gcs", self.accepts_gcs))

    def reads_page_text(self) -> bool:
        """Whether a PDF page rendered for this model also yields its text layer as a text item."""
        return True

    def output_dimensions(self) -> int | None:
        """The size of every vector (None until known, for unknown models)."""
        return self.dimensions

    def multivector_width(self) -> int | None:
        """The width of each row of the model's multi-vector output (None: it has none)."""
        return self.info.multivector

    def multivector_only(self) -> bool:
        """Whether the model gives multi-vectors and no single vector (a ColPali: no pooled output)."""
        return self.info.known and self.info.dimensions is None and self.info.multivector is not None

    @classmethod
    def multivector_models(cls) -> list[str]:
        """The listed models that give multi-vector output (for error messages)."""
        return [name for name, info in cls.models.items() if info.multivector is not None]

    def image_spec(self) -> ImageSpec:
        side = self.provider.options.image_side or self.image_model().image_side
        return ImageSpec(min_side=side, formats=self.image_formats, max_side=self.image_model().max_side)

    # -- preparing items ------------------------------------------------------------------------------
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

            page, limits = item.raw, self.provider.options.media_limits
            data = page.document.data(limits.max_pdf_bytes)
            rendered = render_page(data, page.page, self.image_spec().min_side, limits.render_max_pixels)
            return Ready(image=prepare_image(rendered, self.image_spec()))
        if item.url is not None:
            if self.server_fetches_urls:
                return Ready(url=item.url)
            data = download(item.url, self.provider.download_policy, self.provider.download_session())
            return Ready(image=prepare_image(data, self.image_spec()))
        if item.gcs_uri is not None:
            if not self.reads_gcs():
                raise InputError(f"{self.name} cannot read gs:// URIs")
            return Ready(gcs_uri=item.gcs_uri)
        if item.raw is None:
            raise InputError("image item has no content")
        return Ready(image=prepare_image(item.raw, self.image_spec()))

    def prepare_media(self, item: MediaItem) -> Ready:
        """A PDF (or page range of one), video or audio in wire form: local bytes within the caps, or gs://."""
        limits = self.provider.options.media_limits
        start: float | None = getattr(item, "start", None)
        end: float | None = getattr(item, "end", None)
        if item.gcs_uri is not None:
            if not self.reads_gcs():
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

    # -- answers ----------------------------------------------------------------------------------------
    def finish(self, vectors: Sequence[Any], expected: int) -> list[np.ndarray]:
        """Check count and shape of a response's vectors, truncate to ``dimensions`` and normalise."""
        if len(vectors) != expected:
            raise InvalidResponseError(f"expected {expected} embeddings, got {len(vectors)}", provider=self.name)
        out = [self._vector(raw) for raw in vectors]
        sizes = {v.size for v in out}
        if len(sizes) > 1:
            raise InvalidResponseError(f"embeddings of mixed sizes {sorted(sizes)}", provider=self.name)
        return out

    def _vector(self, raw: Any) -> np.ndarray:
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
        return normalise(vec, self.name)

    def finish_multi(self, arrays: Sequence[Any], expected: int) -> list[np.ndarray]:
        """Check a multi-vector answer: ``expected`` arrays of rows of the model's width, each row normalised."""
        if len(arrays) != expected:
            raise InvalidResponseError(f"expected {expected} multi-vectors, got {len(arrays)}", provider=self.name)
        return [self._multivector_rows(raw) for raw in arrays]

    def _multivector_rows(self, raw: Any) -> np.ndarray:
        try:
            rows = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidResponseError("a multi-vector is not a list of rows of numbers", provider=self.name) from exc
        width = self.multivector_width()
        if rows.ndim != 2 or rows.shape[0] == 0 or (width is not None and rows.shape[1] != width):
            raise InvalidResponseError(
                f"a multi-vector has shape {rows.shape}, not (rows, {width})", provider=self.name
            )
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
            raise InvalidResponseError("a multi-vector row is zero or not finite", provider=self.name)
        unit: np.ndarray = (rows / norms).astype(np.float32, copy=False)
        return unit

    def indexed_parser(self, expected: int) -> Callable[[requests.Response], list[np.ndarray]]:
        """A parser for ``{"data": [{"index", "embedding"}]}`` answers (the OpenAI shape many APIs share)."""

        def parse(response: requests.Response) -> list[np.ndarray]:
            return self.finish(indexed_data(response, self.name, expected), expected)

        return parse

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
